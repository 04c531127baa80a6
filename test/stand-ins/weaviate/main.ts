/**
 * The Weaviate stand-in as its own process:
 *
 *   node --import tsx test/stand-ins/weaviate/main.ts [--http-port N] [--grpc-port N] [--control-port N] [--version V] [--api-key K]
 *
 * Prints one JSON line {"msg":"listening","httpPort","grpcPort","controlPort"}.
 * The control port (always up, also while the stand-in is "down"):
 *   GET  /stats                    counters, faults, sizes
 *   POST /faults  {slowMs, errorRate, errorStatus, errorMessage, notReady, starting}   (merged; {} clears nothing)
 *   POST /faults/clear
 *   POST /down | /up               stop / resume listening on the same ports
 *   POST /counters/reset
 *   POST /data/clear
 * SIGTERM/SIGINT exit 0.
 */
import { createServer } from 'node:http';
import { startWeaviateStandIn, type Faults } from './server.js';
import { searchLog } from './grpc.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const standIn = await startWeaviateStandIn({
  host: arg('host'),
  httpPort: Number(arg('http-port') ?? 0),
  grpcPort: Number(arg('grpc-port') ?? 0),
  version: arg('version'),
  apiKey: arg('api-key'),
});

const control = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    (async () => {
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<Faults> : {};
      switch (`${req.method} ${req.url}`) {
        case 'GET /stats': return standIn.stats();
        case 'GET /searches': return searchLog;
        case 'POST /faults': return standIn.setFaults(body);
        case 'POST /faults/clear': standIn.clearFaults(); return standIn.faults;
        case 'POST /down': await standIn.down(); return standIn.stats();
        case 'POST /up': await standIn.up(); return standIn.stats();
        case 'POST /counters/reset': standIn.resetCounters(); return standIn.stats();
        case 'POST /data/clear': standIn.store.clear(); return standIn.stats();
        default: throw Object.assign(new Error(`no route ${req.method} ${req.url}`), { status: 404 });
      }
    })().then(
      (out) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(out)); },
      (err: Error & { status?: number }) => { res.writeHead(err.status ?? 500, { 'content-type': 'application/json' }); res.end(JSON.stringify({ error: err.message })); },
    );
  });
});
await new Promise<void>((r) => control.listen(Number(arg('control-port') ?? 0), arg('host') ?? '127.0.0.1', () => r()));
const controlPort = (control.address() as { port: number }).port;
process.stdout.write(`${JSON.stringify({ msg: 'listening', httpPort: standIn.httpPort, grpcPort: standIn.grpcPort, controlPort, pid: process.pid })}\n`);

const stop = () => {
  control.close();
  void standIn.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
