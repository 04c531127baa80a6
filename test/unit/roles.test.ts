import { expect } from 'chai';
import { inboxPrefixFor, isInboxSubject, permissionsFor, ROLES, type Permission } from '@shoal/protocol';

/** NATS subject matching, as the server applies a permission entry. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}
const may = (perm: Permission, subject: string) => perm.allow.some((a) => matches(a, subject)) && !(perm.deny ?? []).some((d) => matches(d, subject));

describe('roles (the permission table)', () => {
  const inbox = inboxPrefixFor('UKEY');
  const pub = (role: (typeof ROLES)[number], subject: string) => may(permissionsFor(role, inbox).publish, subject);
  const sub = (role: (typeof ROLES)[number], subject: string) => may(permissionsFor(role, inbox).subscribe, subject);

  it('a client may acquire, exec and operate leases, and nothing that steers', () => {
    for (const ok of ['shoal.synthetic.acquire', 'shoal.synthetic.exec', 'shoal.node.n1.acquire', 'shoal.node.n1.exec', 'shoal.node.n1.lease.release', 'shoal.node.n1.lease.renew', 'shoal.node.n1.lease.exec']) expect(pub('client', ok), ok).to.equal(true);
    for (const no of ['shoal.hb.n1', 'shoal.hb.acquire', 'shoal.admin.strategy', 'shoal.admin.acquire', 'shoal.node.n1.drain', 'shoal.node.n1.scale', 'shoal.admin.scale.synthetic', '$KV.shoal_settings.strategy', '$JS.API.STREAM.DELETE.KV_shoal_settings', '_INBOX.UOTHER.x', 'shoal.events.lease.n1', 'shoal.health.verdict.n1', 'shoal.autoscaler.desired.p']) expect(pub('client', no), no).to.equal(false);
  });

  it('a client receives only on its own inbox prefix (and lease/node events)', () => {
    expect(sub('client', `${inbox}.abc.1`)).to.equal(true);
    for (const no of ['>', '_INBOX.>', '_INBOX.UOTHER.abc', 'shoal.hb.n1', 'shoal.node.n1.lease.exec', 'shoal.synthetic.acquire']) expect(sub('client', no), no).to.equal(false);
  });

  it('only nodes heartbeat; only admin, the autoscaler (targets, scale) and the health checker (verdicts) steer', () => {
    for (const r of ROLES) expect(pub(r, 'shoal.hb.n1'), r).to.equal(r === 'pool-node');
    for (const r of ROLES) expect(pub(r, 'shoal.node.n1.drain'), r).to.equal(r === 'admin');
    for (const r of ROLES) expect(pub(r, 'shoal.node.n1.scale'), r).to.equal(r === 'admin' || r === 'autoscaler');
    for (const r of ROLES) expect(pub(r, 'shoal.admin.strategy'), r).to.equal(r === 'admin');
    expect(pub('autoscaler', '$KV.shoal_settings.target.synthetic')).to.equal(true);
    expect(pub('autoscaler', '$KV.shoal_settings.strategy')).to.equal(false);
    expect(pub('health-checker', '$KV.shoal_settings.health.n1')).to.equal(true);
    expect(pub('health-checker', '$KV.shoal_settings.weight.n1')).to.equal(false);
    expect(pub('pool-node', 'shoal.node.n2.drain')).to.equal(false);
  });

  it('a service may update the stream of its own bucket only (replicas, the lease), never the shared settings bucket', () => {
    const update = (b: string) => `$JS.API.STREAM.UPDATE.KV_${b}`;
    for (const r of ROLES) expect(pub(r, update('shoal_settings')), r).to.equal(r === 'admin');
    for (const r of ROLES) expect(pub(r, update('shoal_autoscaler_leader')), r).to.equal(r === 'admin' || r === 'autoscaler');
    for (const r of ROLES) expect(pub(r, update('shoal_turns')) && pub(r, update('shoal_parked')), r).to.equal(r === 'admin' || r === 'pool-node');
  });

  it('jetstream.domain: the same JetStream rights on $JS.<domain>.API (as a leaf server checks them) and $JS.API (as the domain\'s own server does)', () => {
    const dpub = (role: (typeof ROLES)[number], subject: string) => may(permissionsFor(role, inbox, 'shoal', undefined, 'hub').publish, subject);
    for (const api of ['$JS.API', '$JS.hub.API']) {
      const kv = api === '$JS.API' ? '$KV' : `${api}.$KV`;
      expect(dpub('autoscaler', `${api}.STREAM.CREATE.KV_shoal_autoscaler_leader`), api).to.equal(true);
      expect(dpub('autoscaler', `${kv}.shoal_settings.target.synthetic`), api).to.equal(true);
      expect(dpub('autoscaler', `${kv}.shoal_settings.strategy`), api).to.equal(false);
      expect(dpub('health-checker', `${kv}.shoal_settings.health.n1`), api).to.equal(true);
      expect(dpub('balancer', `${api}.DIRECT.GET.KV_shoal_settings.$KV.shoal_settings.strategy`), api).to.equal(true);
      expect(dpub('pool-node', `${kv}.shoal_turns.team-a.0`), api).to.equal(true);
      expect(dpub('admin', `${api}.STREAM.DELETE.KV_shoal_settings`), api).to.equal(true);
      for (const r of ROLES.filter((x) => x !== 'admin')) expect(dpub(r, `${api}.STREAM.DELETE.KV_shoal_settings`), r).to.equal(false);
      for (const no of [`${api}.INFO`, `${kv}.shoal_settings.strategy`, `${api}.STREAM.CREATE.KV_shoal_settings`]) expect(dpub('client', no), no).to.equal(false);
    }
    // Another domain is not granted.
    expect(dpub('autoscaler', '$JS.other.API.STREAM.CREATE.KV_shoal_autoscaler_leader')).to.equal(false);
  });

  it('the reply rule: only _INBOX subjects without wildcards', () => {
    for (const ok of ['_INBOX.abc', '_INBOX.UKEY.abc.12']) expect(isInboxSubject(ok), ok).to.equal(true);
    for (const no of [undefined, '', '_INBOX', '_INBOX.', '_INBOX.>', '_INBOX.a.*', '_INBOX..a', '_INBOX.a.', 'shoal.node.n1.drain', '_INBOXX.a', '_INBOX.a b']) expect(isInboxSubject(no), String(no)).to.equal(false);
  });
});
