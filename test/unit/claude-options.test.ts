import { expect } from 'chai';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildArgs, buildEnv, DEFAULT_ENV_ALLOW, parseOptions, resolveCommand } from '../../services/pool-node/src/drivers/claude-cli/index.js';
import { ROOT } from '../helpers/procs.js';
import { prerequisite } from '../helpers/prerequisite.js';

const BASE = ['--output-format', 'stream-json', '--verbose', '--input-format', 'stream-json'];
const SID = '11111111-2222-4333-8444-555555555555';
const OTHER = '99999999-8888-4777-a666-555555555555';

describe('claude-cli options → arguments and environment', () => {
  it('builds the SDK flags and nothing else from empty options', () => {
    expect(buildArgs(parseOptions({}))).to.deep.equal(BASE);
    expect(buildArgs(parseOptions({}), { sessionId: SID })).to.deep.equal([...BASE, `--session-id=${SID}`]);
  });

  it('maps every typed option to its flag, in a stable order', () => {
    const o = parseOptions({
      args: ['/opt/stand-in.mjs'], model: 'sonnet', system_prompt: 'You are terse.', append_system_prompt: 'Answer in French.',
      allowed_tools: ['Read', 'Grep'], disallowed_tools: 'Bash, Write', max_turns: 3, permission_mode: 'acceptEdits',
      include_partial_messages: true, mcp_config: { mcpServers: { fs: { command: 'mcp-fs' } } }, add_dirs: ['/data', '/docs'],
    });
    expect(buildArgs(o, { sessionId: SID })).to.deep.equal([
      '/opt/stand-in.mjs', ...BASE,
      '--model', 'sonnet', '--system-prompt', 'You are terse.', '--append-system-prompt', 'Answer in French.',
      '--allowedTools', 'Read,Grep', '--disallowedTools', 'Bash,Write', '--max-turns', '3', '--permission-mode', 'acceptEdits',
      '--include-partial-messages', `--session-id=${SID}`, '--mcp-config', '{"mcpServers":{"fs":{"command":"mcp-fs"}}}',
      '--add-dir', '/data', '--add-dir', '/docs',
    ]);
  });

  it('resumes without --session-id, or forks with one; a run-time resume overrides the pool option', () => {
    expect(buildArgs(parseOptions({ resume: SID }), { sessionId: OTHER })).to.deep.equal([...BASE, `--resume=${SID}`]);
    expect(buildArgs(parseOptions({ resume: SID, fork_session: true }), { sessionId: OTHER })).to.deep.equal([...BASE, `--resume=${SID}`, '--fork-session', `--session-id=${OTHER}`]);
    expect(buildArgs(parseOptions({ resume: SID }), { resume: OTHER })).to.deep.equal([...BASE, `--resume=${OTHER}`]);
  });

  it('keeps a prompt with spaces, quotes and newlines as one argument (no shell involved)', () => {
    const prompt = 'line one\n"quoted" $HOME `x`; rm -rf /';
    const args = buildArgs(parseOptions({ system_prompt: prompt }));
    expect(args[args.indexOf('--system-prompt') + 1]).to.equal(prompt);
  });

  it('rejects unknown keys and bad values with the key named', () => {
    const bad = (o: Record<string, unknown>, re: RegExp) => expect(() => parseOptions(o)).to.throw(re);
    bad({ modle: 'x' }, /option modle.*unknown option/);
    bad({ max_turns: 0 }, /max_turns.*integer >= 1/);
    bad({ max_turns: 'many' }, /max_turns/);
    bad({ permission_mode: 'yolo' }, /permission_mode.*one of/);
    bad({ resume: 'not-a-uuid' }, /resume.*UUID/);
    bad({ session_id: 42 }, /session_id/);
    bad({ fork_session: true }, /fork_session.*resume/);
    bad({ allowed_tools: [1, 2] }, /allowed_tools/);
    bad({ env_allow: ['OK', 'NOT OK'] }, /env_allow/);
    bad({ env: ['A=1'] }, /env.*mapping/);
    bad({ cwd: 'relative/dir' }, /cwd.*absolute/);
    bad({ reset_mode: 'reboot' }, /reset_mode/);
    bad({ clear_timeout: 'soon' }, /clear_timeout/);
    bad({ include_partial_messages: 'yes please' }, /include_partial_messages/);
    bad({ mcp_config: 7 }, /mcp_config/);
  });

  it('parses durations and sizes', () => {
    const o = parseOptions({ clear_timeout: '2s', interrupt_timeout: 1500, stderr_tail: '4KB', rss_refresh: '250ms', include_partial_messages: 'true' });
    expect(o).to.include({ clearTimeoutMs: 2000, interruptTimeoutMs: 1500, stderrTailBytes: 4096, rssRefreshMs: 250, includePartialMessages: true });
  });

  it('maps the typed service flags and session_persistence to the flags the installed CLI has', () => {
    const o = parseOptions({ max_budget_usd: 0.5, fallback_model: 'haiku', settings: { apiKeyHelper: '/bin/key' }, strict_mcp_config: true, json_schema: { type: 'object' }, effort: 'low', session_persistence: false, turn_timeout: '20m', stall_timeout: '0' });
    const a = buildArgs(o);
    expect(a.join(' ')).to.contain('--strict-mcp-config --settings {"apiKeyHelper":"/bin/key"} --json-schema {"type":"object"} --max-budget-usd 0.5 --fallback-model haiku --effort low --no-session-persistence');
    expect(o).to.include({ turnTimeoutMs: 1_200_000, stallTimeoutMs: 0, privateConfig: true });
    expect(buildArgs(parseOptions({}))).to.not.include('--no-session-persistence');
    expect(parseOptions({})).to.include({ turnTimeoutMs: 600_000, stallTimeoutMs: 300_000 });
    expect(() => parseOptions({ max_budget_usd: -1 })).to.throw(/max_budget_usd/);
    expect(() => parseOptions({ effort: 'huge' })).to.throw(/effort/);
    expect(() => parseOptions({ json_schema: '{not json' })).to.throw(/json_schema/);
    expect(() => parseOptions({ turn_timeout: '2h' })).to.throw(/turn_timeout/);
  });

  it('passes only allow-listed variables, then fixed ones; drops NODE_OPTIONS; sets the SDK entrypoint', () => {
    const from = { PATH: '/bin', HOME: '/h', ANTHROPIC_API_KEY: 'sk-1', AWS_SECRET_ACCESS_KEY: 'nope', NODE_OPTIONS: '--inspect', SHOAL_NATS_PASS: 'secret' };
    const env = buildEnv(parseOptions({}), from);
    expect(env).to.deep.equal({ PATH: '/bin', HOME: '/h', ANTHROPIC_API_KEY: 'sk-1', CLAUDE_CODE_ENTRYPOINT: 'sdk-ts' });
    const narrow = buildEnv(parseOptions({ private_config: false, env_allow: ['PATH', 'NODE_OPTIONS'], env: { CLAUDE_CONFIG_DIR: '/shared/claude', NODE_OPTIONS: '--x', CLAUDE_CODE_ENTRYPOINT: 'cli' } }), from);
    expect(narrow).to.deep.equal({ PATH: '/bin', CLAUDE_CONFIG_DIR: '/shared/claude', CLAUDE_CODE_ENTRYPOINT: 'sdk-ts' });
    // A private session: its own HOME and config dir, whatever the node's are.
    const own = buildEnv(parseOptions({}), from, { home: '/s/home', configDir: '/s/home/.claude' });
    expect(own).to.include({ HOME: '/s/home', CLAUDE_CONFIG_DIR: '/s/home/.claude', ANTHROPIC_API_KEY: 'sk-1' });
    expect(() => parseOptions({ env: { HOME: '/x' } })).to.throw(/env.HOME.*private_config/);
    expect(DEFAULT_ENV_ALLOW).to.include.members(['ANTHROPIC_API_KEY', 'CLAUDE_CODE_OAUTH_TOKEN']);
    expect(DEFAULT_ENV_ALLOW).to.not.include('NODE_OPTIONS');
  });

  describe('command lookup', () => {
    let dir: string;
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'claude-cmd-'));
      mkdirSync(join(dir, 'bin'));
      mkdirSync(join(dir, 'proj', 'node_modules', '.bin'), { recursive: true });
      mkdirSync(join(dir, 'proj', 'sub'));
      for (const p of [join(dir, 'bin', 'claude'), join(dir, 'proj', 'node_modules', '.bin', 'claude')]) { writeFileSync(p, '#!/bin/sh\n'); chmodSync(p, 0o755); }
      writeFileSync(join(dir, 'bin', 'not-exec'), '');
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('prefers PATH, then node_modules/.bin up from the working directory', () => {
      expect(resolveCommand('claude', { PATH: join(dir, 'bin') }, join(dir, 'proj', 'sub')).path).to.equal(join(dir, 'bin', 'claude'));
      expect(resolveCommand('claude', { PATH: '/nonexistent' }, join(dir, 'proj', 'sub')).path).to.equal(join(dir, 'proj', 'node_modules', '.bin', 'claude'));
    });

    const dev = join(ROOT, 'node_modules', '.bin', 'claude');
    if (prerequisite('the real Claude Code CLI (node_modules/.bin/claude)', existsSync(dev), 'npm install')) it('finds the repository\'s dev dependency (node_modules/.bin/claude) from any working directory', () => {
      expect(resolveCommand('claude', { PATH: '/nonexistent' }, ROOT).path).to.equal(dev);
      expect(resolveCommand('claude', { PATH: '' }, '/').path).to.equal(dev);
    });

    it('takes absolute and relative paths as they are, and reports where it looked', () => {
      expect(resolveCommand(join(dir, 'bin', 'claude'), {}).path).to.equal(join(dir, 'bin', 'claude'));
      expect(resolveCommand('bin/claude', {}, dir).path).to.equal(join(dir, 'bin', 'claude'));
      expect(resolveCommand(join(dir, 'bin', 'not-exec'), {}).path).to.equal(undefined);
      const miss = resolveCommand('claude-nowhere', { PATH: join(dir, 'bin') }, dir);
      expect(miss.path).to.equal(undefined);
      expect(miss.looked[0]).to.equal(join(dir, 'bin', 'claude-nowhere'));
    });
  });
});
