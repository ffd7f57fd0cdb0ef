/**
 * Hostile clients against the server's memory, descriptors and attention (issue 11, items 5,
 * 6, 8, 9, 10, and a connection flood): replies never read, REGION_INFO replies that each hold
 * a dup of BAR1's memfd, migration data without end, a client that says nothing, replies owed
 * to a client that half-closed, hundreds of connections while the device is in use. Each
 * attack (attacks.ts) runs against a server process of its own; recovery.ts checks the rest.
 */
import { describe, it } from 'node:test';
import { ATTACKS } from './attacks.ts';
import { underAttack } from './recovery.ts';

describe('hostile clients: output, descriptors, sessions', () => {
  for (const attack of ATTACKS.filter((a) => a.group === 'clients')) {
    it(attack.title, () => underAttack(attack.name, (server, baseline) => attack.run(server, baseline), attack.args));
  }
});
