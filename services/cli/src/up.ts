import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type NodeConfig } from '@shoal/config';
import { DEFAULT_PREFIX, subjects } from '@shoal/protocol';
import { intFlag, UsageError, type FlagValues } from './args.js';
import { fetchStatus, openNats } from './cluster.js';
import { authConfig, defaultCredsDir, ensureCreds, type Credential } from './nats-auth.js';
import { EXIT, type Command, type Ctx } from './context.js';
import { compactLog, ms, paint, type Color } from './format.js';
import { followDesired, type NodeControl } from './follow-desired.js';
import { canConnect, Child, commandOf, describeExit, findExecutable, portFree, sleep, UpError, type Exit, type Kind } from './supervise.js';

export { findExecutable, portFree, UpError } from './supervise.js';

/** The repository root: this file is services/cli/dist/up.js. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/**
 * Services started when they are built, one row per kind; not fatal if they
 * fail. `replicas` from the options (e.g. --autoscalers); several replicas
 * are named `<svc>-<i>` and get their id in `idEnv`.
 */
interface OptionalService { svc: string; replicas: (o: UpOptions) => number; idEnv?: string }
const OPTIONAL_SERVICES: OptionalService[] = [
  { svc: 'autoscaler', replicas: (o) => o.autoscalers, idEnv: 'SHOAL_AUTOSCALER_ID' },
  { svc: 'health-checker', replicas: (o) => o.healthCheckers, idEnv: 'SHOAL_HEALTH_CHECKER_ID' },
];
const replicaNames = (k: OptionalService, o: UpOptions): string[] => {
  const n = k.replicas(o);
  return n === 1 ? [k.svc] : Array.from({ length: n }, (_, i) => `${k.svc}-${i + 1}`);
};
const READY_TIMEOUT_MS = 30_000;
const NATS_STOP_MS = 5_000;
/** Under the data dir: which `shoal up` runs which nats-server, to stop one a killed `shoal up` left behind. */
const RUN_FILE = 'shoal-up.json';


interface RunRecord { upPid: number; natsPid: number; port: number; storeDir: string }

function readRunRecord(file: string): Partial<RunRecord> | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Partial<RunRecord>;
  } catch {
    return undefined;
  }
}

interface UpOptions {
  configFile: string;
  config: NodeConfig;
  nodes: number;
  balancers: number;
  /** Autoscaler replicas (one leads). */
  autoscalers: number;
  /** Pools whose pool-node count follows the autoscaler's desired pool-nodes. */
  followDesired: string[];
  /** Health-checker replicas. */
  healthCheckers: number;
  port: number;
  dataDir: string;
  tempDir: boolean;
  httpBase: number;
  rawLogs: boolean;
  stopTimeoutMs: number;
  /** The prefix the services use: --prefix, else the config's (with SHOAL_PREFIX). */
  prefix: string;
  /** Set SHOAL_PREFIX for the children (--prefix given). */
  prefixFlag: boolean;
  /** Roles on NATS (the default); false with --no-auth (development mode). */
  auth: boolean;
  credsDir: string;
  env: NodeJS.ProcessEnv;
}

const PALETTE: Color[] = ['cyan', 'magenta', 'blue', 'green', 'yellow'];

/** The local cluster: starts everything, prints its logs, stops everything on a signal. */
class LocalCluster {
  private readonly children: Child[] = [];
  private nats: Child | undefined;
  private stopping: Promise<number> | undefined;
  private nameWidth = 6;
  private finish!: (code: number) => void;
  private readonly done = new Promise<number>((r) => { this.finish = r; });
  private readyAt: number | undefined;
  /** A second signal killed everything: exit 130. */
  private forced = false;
  /** For pool-nodes started later (--follow-desired). */
  private nodeScript = '';
  private nodeEnv: (i: number) => Promise<NodeJS.ProcessEnv> = async () => ({});
  private nextNode = 1;
  /** Nodes stopped on purpose (--follow-desired drained them): their exit is no failure. */
  private readonly retired = new Set<Child>();
  private readonly followers: { stop(): Promise<void> }[] = [];

  /** Role credentials, when roles are on. */
  private creds: Credential[] = [];

  constructor(private readonly ctx: Ctx, private readonly o: UpOptions) {}

  private adminAuth(): { nkeySeedFile?: string } {
    const admin = this.creds.find((c) => c.name === 'admin');
    return admin ? { nkeySeedFile: admin.seedFile } : {};
  }

  private say(line: string, color: Color = 'gray'): void {
    if (this.ctx.json) return;
    this.ctx.stdout.write(paint(this.ctx.stdout, color, `shoal: ${line}`) + '\n');
  }

  private event(ev: Record<string, unknown>): void {
    if (this.ctx.json) this.ctx.emit({ ts: new Date().toISOString(), proc: 'shoal-up', ...ev });
  }

  /** A child's log line: compact and prefixed, or raw. nats-server's info chatter is hidden unless --raw-logs. */
  private onLine = (c: Child, stream: 'out' | 'err', line: string): void => {
    if (this.ctx.json) {
      if (line.startsWith('{')) {
        try { this.ctx.emit({ proc: c.name, ...(JSON.parse(line) as object) }); return; } catch { /* fall through */ }
      }
      if (c.kind === 'nats' && !this.o.rawLogs && !/\[(WRN|ERR|FTL)\]/.test(line)) return;
      this.ctx.emit({ proc: c.name, stream, line });
      return;
    }
    const out = this.ctx.stdout;
    const color = PALETTE[this.children.indexOf(c) % PALETTE.length]!;
    const tag = paint(out, color, `[${c.name}]`.padEnd(this.nameWidth + 2));
    if (this.o.rawLogs) { out.write(`${tag} ${line}\n`); return; }
    let level: string;
    let text: string;
    if (c.kind === 'nats') {
      const m = /^\[\d+\] \S+ \S+ \[(\w+)\] (.*)$/.exec(line);
      const lvl = m?.[1] ?? 'INF';
      if (!['WRN', 'ERR', 'FTL'].includes(lvl)) return;
      level = lvl === 'WRN' ? 'warn' : 'error';
      text = m?.[2] ?? line;
    } else if (stream === 'err') {
      level = 'error';
      text = line;
    } else {
      ({ level, text } = compactLog(line));
      if (level === 'debug') return;
    }
    const lv = level === 'error' ? paint(out, 'red', 'error') : level === 'warn' ? paint(out, 'yellow', 'warn ') : paint(out, 'gray', level.padEnd(5).slice(0, 5));
    out.write(`${tag} ${lv} ${text}\n`);
  };

  /** Start nothing more once stopping began (a signal during start). */
  private checkStopping(): void {
    if (this.stopping) throw new UpError('interrupted while starting');
  }

  private spawnService(name: string, kind: Kind, script: string, env: NodeJS.ProcessEnv): Child {
    this.checkStopping();
    const c = new Child(name, kind, process.execPath, [script], env, this.onLine);
    this.children.push(c);
    void c.exited.then((e) => this.onExit(c, e));
    return c;
  }

  /** What --follow-desired may do: count, start and drain this cluster's pool-nodes. */
  private nodeControl(): NodeControl {
    const live = () => this.children.filter((c) => c.kind === 'node' && c.running && !this.retired.has(c));
    return {
      running: () => live().length,
      start: async () => {
        this.checkStopping();
        const i = this.nextNode++;
        const c = this.spawnService(`node-${i}`, 'node', this.nodeScript, await this.nodeEnv(i));
        this.nameWidth = Math.max(this.nameWidth, c.name.length);
        await c.waitReady(READY_TIMEOUT_MS);
        this.event({ event: 'started', name: c.name, pid: c.pid, httpPort: c.ready?.httpPort ?? null, cause: 'follow-desired' });
        return c.name;
      },
      drain: async () => {
        // The newest first: the nodes `shoal up` began with stay.
        const c = live().at(-1);
        if (!c) return undefined;
        this.retired.add(c);
        await c.stop('SIGTERM', this.o.stopTimeoutMs);
        return c.name;
      },
    };
  }

  private onExit(c: Child, e: Exit): void {
    this.event({ event: 'exit', name: c.name, pid: c.pid, code: e.code, signal: e.signal });
    if (this.stopping || !this.readyAt || this.retired.has(c)) return;
    const gone = `${c.name} (pid ${c.pid}) exited unexpectedly (${describeExit(e)})${c.lastError()}`;
    if (c.kind === 'nats') {
      this.ctx.stderr.write(`shoal: ${gone}; stopping the cluster\n`);
      void this.stop('nats-server exited', EXIT.FAILED);
      return;
    }
    const nodesLeft = this.children.filter((x) => x.kind === 'node' && x.running).length;
    if (c.kind === 'node' && nodesLeft === 0) {
      this.ctx.stderr.write(`shoal: ${gone}; no pool-node left, stopping the cluster\n`);
      void this.stop('all nodes gone', EXIT.FAILED);
      return;
    }
    this.ctx.stderr.write(`shoal: ${gone}; the rest keeps running\n`);
  }

  async run(): Promise<number> {
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    /** The stop was asked for (not caused by a failure): its code is the answer, even during start. */
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals) => {
      signalled = true;
      if (this.stopping) {
        // A second Ctrl-C: no more waiting.
        this.ctx.stderr.write(`shoal: ${sig} again, killing everything now\n`);
        this.forced = true;
        for (const c of this.children) if (c.running) c.signal('SIGKILL', true);
        return;
      }
      if (!this.ctx.json) this.ctx.stdout.write('\n');
      void this.stop(`${sig}`, EXIT.OK);
    };
    for (const s of signals) process.on(s, onSignal);
    // Whatever happens, no child outlives us.
    const lastResort = () => { for (const c of this.children) if (c.running) c.signal('SIGKILL', true); };
    process.on('exit', lastResort);
    try {
      await Promise.race([this.start(), this.done.then(() => undefined)]);
      return await this.done;
    } catch (err) {
      if (!this.stopping) void this.stop('start failed', EXIT.FAILED);
      await this.stopping;
      // A signal during start stops the children, which then fail their start:
      // that is the stop working, not a failure to report.
      if (signalled) return await this.done;
      throw err;
    } finally {
      for (const s of signals) process.off(s, onSignal);
      process.off('exit', lastResort);
    }
  }

  private async start(): Promise<void> {
    const o = this.o;
    const t0 = Date.now();
    const natsBin = findExecutable(o.env.SHOAL_NATS_SERVER || 'nats-server', o.env);
    if (!natsBin) {
      throw new UpError(o.env.SHOAL_NATS_SERVER
        ? `SHOAL_NATS_SERVER=${o.env.SHOAL_NATS_SERVER} is not an executable`
        : 'nats-server not found on PATH: run `bash scripts/ensure-deps.sh` (or `apt-get install nats-server`), or set SHOAL_NATS_SERVER');
    }
    const storeDir = join(o.dataDir, 'nats');
    await this.stopStaleNats(storeDir);
    const port = o.port === 0 ? await freeTcpPort() : o.port;
    if (!(await portFree(port))) {
      throw new UpError(`port ${port} is already in use (another nats-server or \`shoal up\`?); pick another with --port <n>`);
    }
    mkdirSync(storeDir, { recursive: true });
    const natsUrl = `nats://127.0.0.1:${port}`;
    const extraKinds = OPTIONAL_SERVICES.filter((k) => existsSync(join(ROOT, 'services', k.svc, 'dist/main.js')));
    const extraNames = extraKinds.flatMap((k) => replicaNames(k, o));
    this.nameWidth = Math.max(4, ...[`balancer-${o.balancers}`, `node-${o.nodes}`, ...extraNames].map((n) => n.length));

    this.checkStopping();
    const natsArgs = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir, '-n', `shoal-local-${port}`];
    if (o.auth) {
      this.creds = ensureCreds(o.credsDir);
      const conf = join(o.dataDir, 'nats-auth.conf');
      writeFileSync(conf, authConfig(this.creds, o.prefix));
      natsArgs.push('-c', conf);
      this.say(`roles on: one NKey per role in ${shortPath(o.credsDir)} (--no-auth for the open development mode)`);
    }
    this.say(`starting nats-server on 127.0.0.1:${port} (JetStream in ${shortPath(storeDir)})...`);
    const nats = new Child('nats', 'nats', natsBin, natsArgs, o.env, this.onLine);
    this.nats = nats;
    this.children.push(nats);
    void nats.exited.then((e) => this.onExit(nats, e));
    if (nats.pid !== undefined) {
      const rec: RunRecord = { upPid: process.pid, natsPid: nats.pid, port, storeDir };
      try { writeFileSync(join(o.dataDir, RUN_FILE), JSON.stringify(rec) + '\n'); } catch { /* only a convenience for the next run */ }
    }
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(port))) {
      this.checkStopping();
      if (!nats.running) throw new UpError(`nats-server exited during start (${describeExit(nats.exit!)})${nats.lastError()}`);
      if (Date.now() > deadline) throw new UpError(`nats-server did not accept connections within 10 s${nats.lastError()}`);
      await sleep(25);
    }
    nats.markReady({ url: natsUrl });
    this.event({ event: 'nats', url: natsUrl, pid: nats.pid, storeDir });
    this.say(`nats-server ready (${ms(Date.now() - t0)})`);

    const base: NodeJS.ProcessEnv = { ...o.env, SHOAL_NATS_URL: natsUrl, SHOAL_CONFIG: o.configFile };
    if (o.prefixFlag) base.SHOAL_PREFIX = o.prefix;
    // A local cluster stops quickly: leases get 5 s to come back unless the caller says otherwise.
    if (!o.env.SHOAL_DRAIN_GRACE) base.SHOAL_DRAIN_GRACE = '5s';
    delete base.SHOAL_NODE_ID;
    if (o.auth) for (const k of ['SHOAL_NATS_USER', 'SHOAL_NATS_PASS', 'SHOAL_NATS_TOKEN', 'SHOAL_NATS_CREDS', 'SHOAL_NATS_NKEY_SEED_FILE']) delete base[k];
    const seedOf = (role: string): NodeJS.ProcessEnv => {
      const c = this.creds.find((x) => x.name === role);
      return c ? { SHOAL_NATS_NKEY_SEED_FILE: c.seedFile } : {};
    };
    const httpHost = o.config.http.host === '0.0.0.0' || o.config.http.host === '::' ? '127.0.0.1' : o.config.http.host;
    const httpPort = async (want: number, name: string): Promise<string> => {
      if (want <= 0) return String(o.httpBase < 0 ? -1 : 0);
      if (await portFree(want, httpHost)) return String(want);
      // Said, not silent: the README and docs name the usual ports.
      this.say(`${name}: HTTP port ${want} is taken; using a free port instead (the banner shows it)`);
      return '0';
    };

    const balancerScript = join(ROOT, 'services/balancer/dist/main.js');
    const nodeScript = join(ROOT, 'services/pool-node/dist/main.js');
    for (const s of [nodeScript, ...(o.balancers > 0 ? [balancerScript] : [])]) {
      if (!existsSync(s)) throw new UpError(`${relative(ROOT, s)} is not built: run \`npx tsc -b\` in ${ROOT}`);
    }
    const names: string[] = [];
    const started: Child[] = [];
    const pick = (i: number, offset: number) => (o.httpBase > 0 ? o.httpBase + offset + i : 0);
    for (let i = 1; i <= o.balancers; i++) {
      // After the nodes' ports: the base port itself (8080) is Weaviate's default, which the weaviate pool dials.
      const env = { ...base, ...seedOf('balancer'), SHOAL_BALANCER_ID: `balancer-${i}`, SHOAL_HTTP_PORT: await httpPort(pick(i, o.nodes), `balancer-${i}`) };
      started.push(this.spawnService(`balancer-${i}`, 'balancer', balancerScript, env));
      names.push(`balancer-${i}`);
    }
    for (let i = 1; i <= o.nodes; i++) {
      const env = { ...base, ...seedOf('pool-node'), SHOAL_NODE_ID: `node-${i}`, SHOAL_HTTP_PORT: await httpPort(pick(i, 0), `node-${i}`) };
      started.push(this.spawnService(`node-${i}`, 'node', nodeScript, env));
      names.push(`node-${i}`);
    }
    this.nodeScript = nodeScript;
    const extras: Child[] = [];
    for (const k of extraKinds) {
      const script = join(ROOT, 'services', k.svc, 'dist/main.js');
      for (const name of replicaNames(k, o)) {
        extras.push(this.spawnService(name, 'extra', script, { ...base, ...seedOf(k.svc), SHOAL_HTTP_PORT: o.httpBase < 0 ? '-1' : '0', ...(k.idEnv ? { [k.idEnv]: name } : {}) }));
        names.push(name);
      }
    }
    this.nodeEnv = async (i: number) => ({ ...base, ...seedOf('pool-node'), SHOAL_NODE_ID: `node-${i}`, SHOAL_HTTP_PORT: await httpPort(pick(i, 0), `node-${i}`) });
    this.nextNode = o.nodes + 1;
    this.say(`starting ${names.join(', ')} with ${shortPath(o.configFile)}...`);
    await Promise.all(started.map((c) => c.waitReady(READY_TIMEOUT_MS).then(() => {
      this.event({ event: 'started', name: c.name, pid: c.pid, httpPort: c.ready?.httpPort ?? null });
    })));
    // Optional services: ready when they say so, or after a few seconds alive; a failure is only reported.
    await Promise.all(extras.map(async (c) => {
      try {
        await Promise.race([c.waitReady(READY_TIMEOUT_MS), sleep(5000).then(() => { if (c.running) c.markReady({}); })]);
      } catch (err) {
        this.ctx.stderr.write(`shoal: ${(err as Error).message}; continuing without it\n`);
      }
    }));
    if (o.balancers > 0) await this.waitForMembership(natsUrl, o.nodes);
    this.checkStopping();
    this.readyAt = Date.now();
    this.banner(natsUrl, storeDir, Date.now() - t0);
    for (const pool of o.followDesired) this.followers.push(await followDesired(natsUrl, subjects(o.prefix), pool, this.nodeControl(), (l, c) => this.say(l, c), this.adminAuth()));
  }

  /**
   * A `shoal up` that was SIGKILLed leaves its nats-server running (the
   * services stop by themselves: their lifeline ends). If the run record in
   * the data dir names a `shoal up` that is gone and a nats-server on this
   * store that is not, stop that nats-server. A `shoal up` still running is
   * left alone.
   */
  private async stopStaleNats(storeDir: string): Promise<void> {
    const file = join(this.o.dataDir, RUN_FILE);
    const rec = readRunRecord(file);
    if (rec === undefined) return;
    if (typeof rec.upPid === 'number' && rec.upPid !== process.pid && commandOf(rec.upPid) !== undefined) return;
    const pid = rec.natsPid;
    if (typeof pid === 'number' && pid > 0 && commandOf(pid)?.includes(` -sd ${storeDir} `)) {
      this.say(`stopping nats-server (pid ${pid}, port ${rec.port}) left running by an earlier \`shoal up\` (pid ${rec.upPid}) that did not stop it...`, 'yellow');
      this.event({ event: 'stale-nats', pid, port: rec.port, upPid: rec.upPid });
      const gone = async (ms: number) => {
        const until = Date.now() + ms;
        while (commandOf(pid) !== undefined) {
          if (Date.now() > until) return false;
          await sleep(50);
        }
        return true;
      };
      try { process.kill(pid, 'SIGTERM'); } catch { /* gone meanwhile */ }
      if (!(await gone(NATS_STOP_MS))) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
        await gone(1000);
      }
    }
    rmSync(file, { force: true });
  }

  /** Until a balancer lists every node (or a few seconds pass): then the first acquire after the banner is placed. */
  private async waitForMembership(natsUrl: string, want: number): Promise<void> {
    let nc;
    try {
      nc = await openNats(natsUrl, 5000, this.adminAuth());
      const s = subjects(this.o.prefix);
      const until = Date.now() + 8000;
      while (Date.now() < until && !this.stopping) {
        try {
          const st = await fetchStatus(nc, s, 1000);
          if (st.source === 'balancer' && st.nodes.filter((n) => n.state === 'alive').length >= want) return;
        } catch { /* not yet */ }
        await sleep(200);
      }
      this.say('the balancer does not list every node yet; carrying on', 'yellow');
    } catch { /* the banner still helps */ } finally {
      await nc?.close().catch(() => {});
    }
  }

  private banner(natsUrl: string, storeDir: string, took: number): void {
    const o = this.o;
    const services = this.children.filter((c) => c.kind !== 'nats' && c.running);
    const summary = services.map((c) => ({ name: c.name, kind: c.kind, pid: c.pid, httpPort: (c.ready?.httpPort as number | null | undefined) ?? null, pools: c.pools }));
    // Every balancer serves the same live cluster view at `/`.
    const page = summary.find((c) => c.kind === 'balancer' && c.httpPort);
    const statusPage = page ? `http://127.0.0.1:${page.httpPort}/` : null;
    if (this.ctx.json) {
      this.event({ event: 'ready', natsUrl, natsPid: this.nats?.pid, dataDir: o.dataDir, ms: took, statusPage, children: summary });
      return;
    }
    const out = this.ctx.stdout;
    const w = this.nameWidth;
    const pool = Object.keys(o.config.pools).includes('synthetic') ? 'synthetic' : Object.keys(o.config.pools)[0] ?? 'synthetic';
    const flags = [natsUrl !== 'nats://127.0.0.1:4222' ? `--nats ${natsUrl}` : '', o.prefix !== DEFAULT_PREFIX ? `--prefix ${o.prefix}` : ''].filter(Boolean).join(' ');
    const cmd = (c: string) => `    npx shoal ${c}${flags ? ' ' + flags : ''}`;
    const lines = [
      '',
      paint(out, 'green', `shoal: local cluster ready in ${ms(took)}`),
      ...(statusPage ? [`  status page: ${paint(out, 'bold', statusPage)}  (live; any balancer's port shows the same)`] : []),
      `  ${'nats'.padEnd(w)}  pid ${String(this.nats?.pid).padEnd(7)}  ${natsUrl}  (JetStream data in ${shortPath(storeDir)})`,
      ...summary.map((c) => `  ${c.name.padEnd(w)}  pid ${String(c.pid).padEnd(7)}  ${c.httpPort ? `http://127.0.0.1:${c.httpPort}` : '(no http)'}${c.pools.length ? `  pools: ${c.pools.join(', ')}` : ''}`),
      '',
      '  try, in another terminal:',
      cmd('status'),
      cmd(`acquire ${pool} --hold 2000`),
      cmd(`exec ${pool} echo '{"hello":"world"}'`),
      cmd(`scale ${pool} to 4`),
      ...(o.auth
        ? [`  Roles are on: the CLI uses ${shortPath(join(o.credsDir, 'admin.nk'))}${o.credsDir !== defaultCredsDir(ROOT) ? ` (export SHOAL_CREDS_DIR=${o.credsDir})` : ''};`,
          `  an application connects with SHOAL_NATS_NKEY_SEED_FILE=${shortPath(join(o.credsDir, 'client.nk'))} (docs/security.md).`]
        : ['  Roles are OFF (--no-auth): any NATS client can do anything. Development only.']),
      `  Ctrl-C stops the cluster.`,
      '',
    ];
    out.write(lines.join('\n') + '\n');
  }

  /** Stop in order: services (nodes drain) → nats-server → temp data. Idempotent. */
  stop(why: string, code: number): Promise<number> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      await Promise.all(this.followers.splice(0).map((f) => f.stop()));
      const services = this.children.filter((c) => c.kind !== 'nats');
      const running = services.filter((c) => c.running);
      this.event({ event: 'stopping', reason: why });
      if (running.length > 0) this.say(`stopping ${running.map((c) => c.name).join(', ')} (${why})...`, 'yellow');
      const results = await Promise.all(services.map(async (c) => ({ c, e: await c.stop('SIGTERM', this.o.stopTimeoutMs) })));
      for (const { c, e } of results) {
        if (e.signal === 'SIGKILL' && running.includes(c) && !this.forced) this.ctx.stderr.write(`shoal: ${c.name} did not stop within ${ms(this.o.stopTimeoutMs)}; killed\n`);
      }
      if (this.nats) {
        this.say('stopping nats-server...', 'yellow');
        await this.nats.stop('SIGTERM', NATS_STOP_MS);
        const file = join(this.o.dataDir, RUN_FILE);
        if (readRunRecord(file)?.upPid === process.pid) rmSync(file, { force: true });
      }
      if (this.o.tempDir) rmSync(this.o.dataDir, { recursive: true, force: true });
      this.event({ event: 'stopped', code });
      if (this.children.length > 0) this.say('stopped', 'yellow');
      return code;
    })();
    void this.stopping.then((c) => this.finish(this.forced ? EXIT.INTERRUPTED : c));
    return this.stopping;
  }
}

function shortPath(p: string): string {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith('..') && r.length < p.length ? r : p;
}

function freeTcpPort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

function options(ctx: Ctx, flags: FlagValues, env: NodeJS.ProcessEnv): UpOptions {
  const prefixFlag = typeof flags.prefix === 'string';
  const nodes = intFlag(flags, 'nodes', 2, 1, 32);
  const balancers = intFlag(flags, 'balancers', 1, 0, 8);
  const autoscalers = intFlag(flags, 'autoscalers', 1, 0, 8);
  const healthCheckers = intFlag(flags, 'health-checkers', 1, 0, 8);
  const port = intFlag(flags, 'port', 4222, 0, 65535);
  const envHttp = env.SHOAL_HTTP_PORT !== undefined && env.SHOAL_HTTP_PORT !== '' ? Number(env.SHOAL_HTTP_PORT) : undefined;
  if (envHttp !== undefined && (!Number.isInteger(envHttp) || envHttp < -1 || envHttp > 65535)) throw new UsageError(`SHOAL_HTTP_PORT=${env.SHOAL_HTTP_PORT} must be -1, 0 or a port`);
  const httpBase = flags['http-port'] !== undefined ? intFlag(flags, 'http-port', 8080, -1, 65535 - 64) : envHttp ?? 8080;
  const stopTimeoutMs = intFlag(flags, 'stop-timeout', 15_000, 100, 600_000);
  const configFile = resolve(typeof flags.config === 'string' ? flags.config : env.SHOAL_CONFIG || join(ROOT, 'config/session-pool.yaml'));
  let config: NodeConfig;
  try {
    config = loadConfig({ file: configFile, env: { ...env, SHOAL_NATS_URL: `nats://127.0.0.1:${port || 4222}` } });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  if (Object.keys(config.pools).length === 0) throw new UsageError(`${configFile} defines no pools`);
  const followDesired = typeof flags['follow-desired'] === 'string' ? flags['follow-desired'].split(',').map((x) => x.trim()).filter(Boolean) : [];
  for (const p of followDesired) if (!config.pools[p]) throw new UsageError(`--follow-desired ${p}: ${configFile} has no pool ${p} (pools: ${Object.keys(config.pools).join(', ')})`);
  if (followDesired.length > 0 && autoscalers === 0) throw new UsageError('--follow-desired needs an autoscaler (--autoscalers 1 or more)');
  const dd = typeof flags['data-dir'] === 'string' ? flags['data-dir'] : '.shoal';
  const tempDir = dd === 'tmp';
  // The default lives in the repository (ignored by git) wherever the command runs from; a given path is relative to the cwd.
  const dataDir = tempDir ? mkdtempSync(join(tmpdir(), 'shoal-up-')) : flags['data-dir'] === undefined ? join(ROOT, '.shoal') : resolve(dd);
  const auth = flags['no-auth'] !== true;
  const credsDir = typeof flags['creds-dir'] === 'string' ? resolve(flags['creds-dir']) : env.SHOAL_CREDS_DIR ? resolve(env.SHOAL_CREDS_DIR) : defaultCredsDir(ROOT);
  return { configFile, config, nodes, balancers, autoscalers, healthCheckers, followDesired, port, dataDir, tempDir, httpBase, rawLogs: flags['raw-logs'] === true, stopTimeoutMs, prefix: prefixFlag ? ctx.prefix : config.prefix, prefixFlag, auth, credsDir, env };
}

export const up: Command = {
  name: 'up',
  usage: '',
  summary: 'start a local cluster (nats-server with JetStream, balancer, pool-nodes, autoscaler); Ctrl-C stops it all',
  details: [
    'Uses its own nats-server (SHOAL_NATS_SERVER or nats-server on PATH) on 127.0.0.1, then the balancer(s),',
    'the pool-nodes node-1, node-2, ... and the autoscaler(s) with the config. Child logs are shown as `[node-1] info msg k=v`.',
    '--follow-desired <pool>: start and drain pool-nodes as the autoscaler\'s desired pool-nodes of that pool asks.',
    'HTTP ports: node-i on base+i, balancer-j after the nodes (8081, 8082, 8083), ephemeral when busy (base from',
    '--http-port or SHOAL_HTTP_PORT, default 8080; 0 = all ephemeral, -1 = no HTTP). Nodes get SHOAL_DRAIN_GRACE=5s unless set.',
    'SIGINT/SIGTERM: every service gets SIGTERM (nodes drain), then nats-server; exit 0 with nothing left behind.',
    'SIGKILL: the services stop by themselves (their stdin ends); the next `shoal up` with the same data dir stops the nats-server left behind.',
  ].join('\n'),
  flags: {
    config: { type: 'string', arg: 'file', help: 'node config (default: $SHOAL_CONFIG or config/session-pool.yaml)' },
    nodes: { type: 'number', arg: 'n', help: 'pool-nodes to start (default 2)' },
    balancers: { type: 'number', arg: 'n', help: 'balancer replicas (default 1)' },
    autoscalers: { type: 'number', arg: 'n', help: 'autoscaler replicas, one leads (default 1; 0 = none)' },
    'follow-desired': { type: 'string', arg: 'pool', help: 'start and drain pool-nodes to follow the autoscaler\'s desired pool-nodes of this pool (comma-separated for several), as docker compose --scale or Kubernetes would' },
    'health-checkers': { type: 'number', arg: 'n', help: 'health-checker replicas (default 1; 0 = none)' },
    port: { type: 'number', arg: 'port', help: 'NATS port on 127.0.0.1 (default 4222; 0 = any free port)' },
    'data-dir': { type: 'string', arg: 'dir', help: 'JetStream data under <dir>/nats (default: .shoal in the repository; `tmp` = a temp dir removed on exit)' },
    'http-port': { type: 'number', arg: 'port', help: 'base HTTP port (default $SHOAL_HTTP_PORT or 8080)' },
    'raw-logs': { type: 'boolean', help: 'print the children\'s log lines as they are (JSON), nats-server\'s included' },
    'stop-timeout': { type: 'number', arg: 'ms', help: 'wait this long for a service to stop before SIGKILL (default 15000)' },
    'no-auth': { type: 'boolean', help: 'development mode: NATS without roles or authentication (anyone can do anything)' },
    'creds-dir': { type: 'string', arg: 'dir', help: 'role NKeys (default $SHOAL_CREDS_DIR or .shoal/creds in the repository; made if missing)' },
  },
  args: [0, 0],
  async run(ctx, _args, flags) {
    const o = options(ctx, flags, process.env);
    try {
      return await new LocalCluster(ctx, o).run();
    } catch (err) {
      if (err instanceof UpError) {
        ctx.stderr.write(`error: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
        return err.exitCode;
      }
      throw err;
    } finally {
      if (o.tempDir) rmSync(o.dataDir, { recursive: true, force: true });
    }
  },
};
