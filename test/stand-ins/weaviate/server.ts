/**
 * A wire-compatible Weaviate stand-in, enough for weaviate-client v3 to
 * connect, manage collections, write objects and run the searches Shoal's
 * weaviate driver offers — since no Weaviate server runs on these machines.
 * Importable in-process (benchmarks) and runnable as its own process
 * (main.ts; tests use process.ts).
 *
 * Fault knobs: `down()` stops listening (and drops every connection) until
 * `up()`; `faults.slowMs` delays every request; `faults.errorRate` answers
 * that share of data requests with an error; `faults.notReady` makes
 * /v1/.well-known/ready answer 503; `faults.starting` also makes /v1/meta
 * answer 503 (a server still starting up).
 *
 * TCP connections are counted per port (the `net.server.socket` diagnostics
 * channel sees every accepted socket), so tests can tell how many connections
 * a client really opens and whether closing it leaves any behind.
 */
import dc from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { createServer as createGrpcServer, ServerError, Status, type Server as GrpcServer } from 'nice-grpc';
import { healthService, weaviateService, type Gate } from './grpc.js';
import { HealthDefinition, WeaviateDefinition } from './proto.js';
import { HttpFault, restHandler } from './rest.js';
import { Store } from './store.js';

export interface StandInOptions {
  host?: string;
  /** 0 = any free port (the default); a restarted stand-in passes its old ports. */
  httpPort?: number;
  grpcPort?: number;
  /** What /v1/meta reports; the client refuses < 1.27.0 and uses gRPC aggregate from 1.29.0. */
  version?: string;
  /** Require `Authorization: Bearer <apiKey>` on REST and gRPC. */
  apiKey?: string;
}

export interface Faults {
  /** Delay before answering any request, ms. */
  slowMs: number;
  /** Share (0..1) of data requests (not health, not meta) answered with an error. */
  errorRate: number;
  /** HTTP status of an injected REST error (gRPC: 5xx → UNAVAILABLE if 503, else INTERNAL). */
  errorStatus: number;
  errorMessage: string;
  /** /v1/.well-known/ready answers 503. */
  notReady: boolean;
  /** Still starting up: /v1/meta and /v1/.well-known/ready answer 503 (live and gRPC answer). */
  starting: boolean;
}

export interface PortCounters {
  /** TCP connections accepted since start (or the last resetCounters). */
  connects: number;
  /** TCP connections open now. */
  open: number;
  /** Requests (HTTP requests; gRPC calls). */
  requests: number;
}

export interface StandInStats {
  up: boolean;
  httpPort: number;
  grpcPort: number;
  http: PortCounters;
  grpc: PortCounters;
  faults: Faults;
  collections: number;
  objects: number;
}

const NO_FAULTS: Faults = { slowMs: 0, errorRate: 0, errorStatus: 500, errorMessage: 'stand-in injected error', notReady: false, starting: false };
const GRPC_MAX = 104858000;

export class WeaviateStandIn {
  readonly store = new Store();
  faults: Faults = { ...NO_FAULTS };
  httpPort: number;
  grpcPort: number;
  private readonly host: string;
  private readonly version: string;
  private http: Server | undefined;
  private grpc: GrpcServer | undefined;
  private readonly sockets = { http: new Set<Socket>(), grpc: new Set<Socket>() };
  private readonly counters = { http: { connects: 0, requests: 0 }, grpc: { connects: 0, requests: 0 } };
  private readonly onSocket = (msg: unknown) => {
    const socket = (msg as { socket: Socket }).socket;
    const kind = socket.localPort === this.httpPort ? 'http' : socket.localPort === this.grpcPort ? 'grpc' : undefined;
    if (!kind || !this.isUp) return;
    this.counters[kind].connects++;
    this.sockets[kind].add(socket);
    socket.once('close', () => this.sockets[kind].delete(socket));
  };
  private isUp = false;

  constructor(private readonly opts: StandInOptions = {}) {
    this.host = opts.host ?? '127.0.0.1';
    this.httpPort = opts.httpPort ?? 0;
    this.grpcPort = opts.grpcPort ?? 0;
    this.version = opts.version ?? '1.30.0';
    dc.subscribe('net.server.socket', this.onSocket);
  }

  /** Every request passes here: auth, slowness, injected errors. */
  private readonly gate = (protocol: 'http' | 'grpc'): Gate => async (kind, authorization) => {
    this.counters[protocol].requests++;
    const f = this.faults;
    if (f.slowMs > 0) await new Promise((r) => setTimeout(r, f.slowMs));
    if (this.opts.apiKey && authorization !== `Bearer ${this.opts.apiKey}`) {
      if (protocol === 'grpc') throw new ServerError(Status.UNAUTHENTICATED, 'anonymous access not enabled, please provide an auth scheme such as OIDC or API key');
      throw new HttpFault(401, 'anonymous access not enabled, please provide an auth scheme such as OIDC or API key');
    }
    if (kind === 'data' && f.errorRate > 0 && Math.random() < f.errorRate) {
      if (protocol === 'grpc') throw new ServerError(f.errorStatus === 503 ? Status.UNAVAILABLE : Status.INTERNAL, f.errorMessage);
      throw new HttpFault(f.errorStatus, f.errorMessage);
    }
  };

  get listening(): boolean {
    return this.isUp;
  }

  /** Start (or restart after `down()`) listening, on the same ports once they are known. */
  async start(): Promise<this> {
    if (this.isUp) return this;
    const http = createServer(restHandler(this.store, { version: this.version, grpcMaxMessageSize: GRPC_MAX, ready: () => !this.faults.notReady && !this.faults.starting, starting: () => this.faults.starting, gate: this.gate('http') }));
    // Long idle keep-alive, like a real server's: a client's idle sockets stay open (and visible here).
    http.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(this.httpPort, this.host, () => { http.off('error', reject); resolve(); });
    });
    this.httpPort = (http.address() as { port: number }).port;
    this.http = http;
    const grpc = createGrpcServer({ 'grpc.max_receive_message_length': GRPC_MAX, 'grpc.max_send_message_length': GRPC_MAX });
    grpc.add(WeaviateDefinition, weaviateService(this.store, this.gate('grpc')));
    grpc.add(HealthDefinition, healthService(this.gate('grpc')));
    try {
      this.grpcPort = await grpc.listen(`${this.host}:${this.grpcPort}`);
    } catch (err) {
      await this.closeHttp();
      throw err;
    }
    this.grpc = grpc;
    this.isUp = true;
    return this;
  }

  /** Stop listening and drop every connection, as a stopped server does. Data is kept for `up()`. */
  async down(): Promise<void> {
    if (!this.isUp) return;
    this.isUp = false;
    this.grpc?.forceShutdown();
    this.grpc = undefined;
    await this.closeHttp();
    for (const set of Object.values(this.sockets)) for (const s of set) s.destroy();
  }

  async up(): Promise<void> {
    await this.start();
  }

  private async closeHttp(): Promise<void> {
    const http = this.http;
    this.http = undefined;
    if (!http) return;
    http.closeAllConnections();
    await new Promise<void>((r) => http.close(() => r()));
  }

  /** Stop for good. */
  async close(): Promise<void> {
    await this.down();
    dc.unsubscribe('net.server.socket', this.onSocket);
  }

  resetCounters(): void {
    for (const c of Object.values(this.counters)) { c.connects = 0; c.requests = 0; }
  }

  setFaults(f: Partial<Faults>): Faults {
    this.faults = { ...this.faults, ...f };
    return this.faults;
  }

  clearFaults(): void {
    this.faults = { ...NO_FAULTS };
  }

  stats(): StandInStats {
    let objects = 0;
    for (const m of this.store.objects.values()) objects += m.size;
    return {
      up: this.isUp,
      httpPort: this.httpPort,
      grpcPort: this.grpcPort,
      http: { ...this.counters.http, open: this.sockets.http.size },
      grpc: { ...this.counters.grpc, open: this.sockets.grpc.size },
      faults: { ...this.faults },
      collections: this.store.classes.size,
      objects,
    };
  }
}

export async function startWeaviateStandIn(opts: StandInOptions = {}): Promise<WeaviateStandIn> {
  return new WeaviateStandIn(opts).start();
}
