import { expect } from 'chai';
import { ClaudeBackend } from '../../services/pool-node/src/drivers/claude-cli/backend.js';

const result = (text: string, isError = true) => ({ type: 'result', subtype: 'success', is_error: isError, result: text });

describe('claude-cli backend health (from the turns\' results)', () => {
  it('down after a turn that failed for the account, with the CLI\'s words; up again after a successful turn', () => {
    const b = new ClaudeBackend();
    expect(b.state()).to.deep.equal({ healthy: true });
    b.turn('error', result('Not logged in · Please run /login'));
    expect(b.state()).to.deep.equal({ healthy: false, reason: 'Claude CLI: Not logged in · Please run /login' });
    b.turn('error', result('Invalid API key · Fix external API key'));
    expect(b.state().reason).to.match(/Invalid API key/);
    b.turn('success', result('Hello!', false));
    expect(b.state()).to.deep.equal({ healthy: true });
  });

  it('other failures (an overloaded API, an interrupted turn, a crash) say nothing about the account', () => {
    const b = new ClaudeBackend();
    b.turn('error', result('API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'));
    b.turn('interrupted', { type: 'result', subtype: 'error_during_execution', is_error: true });
    b.turn('crashed');
    expect(b.state()).to.deep.equal({ healthy: true });
  });
});
