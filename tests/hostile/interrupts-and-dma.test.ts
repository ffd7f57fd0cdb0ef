/**
 * Hostile clients against DMA and interrupt delivery (issue 11, items 1-4 and 11): guest RAM
 * that shrinks under the DMA engine, eventfds that are full, blocking, or made blocking behind
 * our back, a resample eventfd that re-fires into a full trigger, a completion interrupt after
 * DMA into a full MSI eventfd, and floods of guest errors. Each attack (attacks.ts) runs
 * against a server process of its own; recovery.ts checks what it must leave behind.
 */
import { describe, it } from 'node:test';
import { ATTACKS } from './attacks.ts';
import { underAttack } from './recovery.ts';

describe('hostile clients: DMA and interrupts', () => {
  for (const attack of ATTACKS.filter((a) => a.group === 'dma-irq')) {
    it(attack.title, () => underAttack(attack.name, (server, baseline) => attack.run(server, baseline), attack.args));
  }
});
