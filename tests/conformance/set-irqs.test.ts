/**
 * DEVICE_SET_IRQS: DATA_NONE/BOOL/EVENTFD × ACTION_MASK/UNMASK/TRIGGER on INTx, MSI wiring,
 * vector ranges, count 0 (disable), flag validation, argsz, and every received eventfd either
 * kept (exactly one copy) or closed. Interrupts are raised through edu's BAR0 register 0x60
 * and observed on our end of the eventfd.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { eventfdConsume, eventfdCreate } from '../../protocol/native/libc.ts';
import {
  Cmd,
  Errno,
  type Harness,
  assertServerClosesFds,
  body,
  closeFds,
  expectErrno,
  expectFdsRefused,
  openFdCount,
  startServer,
  turns,
  u32le,
  withClient,
} from './harness.ts';

const NONE = 1;
const BOOL = 2;
const EVENTFD = 4;
const MASK = 8;
const UNMASK = 16;
const TRIGGER = 32;
const INTX = 0;
const MSI = 1;

const setIrqs = (c: VfioUserClient, s: Parameters<typeof body.setIrqs>[0], errno = 0, fds: number[] = []) =>
  expectErrno(c, Cmd.DEVICE_SET_IRQS, body.setIrqs(s), errno, { fds });

/** Raises edu's interrupt (IRQ_RAISE) and acknowledges it again (IRQ_ACK). */
async function raise(c: VfioUserClient): Promise<void> {
  await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(0x60n, 0, 4, u32le(1)), 0);
  await expectErrno(c, Cmd.REGION_WRITE, body.regionAccess(0x64n, 0, 4, u32le(1)), 0);
}

describe('DEVICE_SET_IRQS', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('walks DATA_NONE/BOOL/EVENTFD × MASK/UNMASK/TRIGGER on INTx', async () => {
    await withClient(h, async (c) => {
      const efd = eventfdCreate();
      const resample = eventfdCreate();
      // INTx is advertised AUTOMASKED: after it fires it stays masked until the client's
      // unmask (QEMU sends one after the guest's EOI), so every observed fire is followed by one.
      const eoi = () => setIrqs(c, { flags: NONE | UNMASK, index: INTX, count: 1 });
      try {
        // EVENTFD × TRIGGER wires the interrupt.
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, 0, [efd]);
        assert.equal(h.server.irqs.heldFds, 1);
        await raise(c);
        assert.equal(eventfdConsume(efd), 1n, 'wired INTx fires');
        await eoi();

        // NONE × MASK / UNMASK.
        await setIrqs(c, { flags: NONE | MASK, index: INTX, count: 1 });
        await raise(c);
        assert.equal(eventfdConsume(efd), 0n, 'masked INTx does not fire');
        await setIrqs(c, { flags: NONE | UNMASK, index: INTX, count: 1 });
        await raise(c);
        assert.equal(eventfdConsume(efd), 1n, 'unmasked INTx fires');
        await eoi();

        // BOOL × MASK / UNMASK: only vectors whose byte is non-zero.
        await setIrqs(c, { flags: BOOL | MASK, index: INTX, count: 1, data: [0] });
        await raise(c);
        assert.equal(eventfdConsume(efd), 1n, 'a 0 byte leaves the vector alone');
        await eoi();
        await setIrqs(c, { flags: BOOL | MASK, index: INTX, count: 1, data: [1] });
        await raise(c);
        assert.equal(eventfdConsume(efd), 0n);
        await setIrqs(c, { flags: BOOL | UNMASK, index: INTX, count: 1, data: [1] });
        await raise(c);
        assert.equal(eventfdConsume(efd), 1n);
        await eoi();

        // NONE / BOOL × TRIGGER: a loopback trigger from the client.
        await setIrqs(c, { flags: NONE | TRIGGER, index: INTX, count: 1 });
        assert.equal(eventfdConsume(efd), 1n);
        await eoi();
        await setIrqs(c, { flags: BOOL | TRIGGER, index: INTX, count: 1, data: [1] });
        assert.equal(eventfdConsume(efd), 1n);
        await eoi();
        await setIrqs(c, { flags: BOOL | TRIGGER, index: INTX, count: 1, data: [0] });
        assert.equal(eventfdConsume(efd), 0n);

        // EVENTFD × MASK is meaningless: EINVAL, and the fd is closed.
        await assertServerClosesFds(1, async (fds) => {
          await setIrqs(c, { flags: EVENTFD | MASK, index: INTX, count: 1 }, Errno.EINVAL, fds);
        });
        // EVENTFD × UNMASK: the resample eventfd (QEMU's KVM INTx path), then detached.
        await setIrqs(c, { flags: EVENTFD | UNMASK, index: INTX, count: 1 }, 0, [resample]);
        assert.equal(h.server.irqs.heldFds, 2);
        await setIrqs(c, { flags: EVENTFD | UNMASK, index: INTX, count: 1 });
        assert.equal(h.server.irqs.heldFds, 1);

        // EVENTFD × TRIGGER without fds detaches the trigger.
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 });
        assert.equal(h.server.irqs.heldFds, 0);
        await raise(c);
        assert.equal(eventfdConsume(efd), 0n, 'a detached INTx does not fire');
      } finally {
        closeFds([efd, resample]);
      }
    });
  });

  it('routes the interrupt to MSI (index 1) when wired, and back to INTx when MSI is disabled', async () => {
    await withClient(h, async (c) => {
      const intx = eventfdCreate();
      const msi = eventfdCreate();
      try {
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, 0, [intx]);
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: MSI, count: 1 }, 0, [msi]);
        await raise(c);
        assert.deepEqual([eventfdConsume(msi), eventfdConsume(intx)], [1n, 0n]);
        await setIrqs(c, { flags: NONE | TRIGGER, index: MSI, count: 1 });
        assert.equal(eventfdConsume(msi), 1n, 'MSI loopback trigger');
        await setIrqs(c, { flags: NONE | TRIGGER, index: MSI, count: 0 });
        await raise(c);
        assert.deepEqual([eventfdConsume(msi), eventfdConsume(intx)], [0n, 1n]);
      } finally {
        closeFds([intx, msi]);
      }
    });
  });

  it('count 0 with DATA_NONE|TRIGGER disables an index and closes the server\'s eventfds', async () => {
    await withClient(h, async (c) => {
      const efd = eventfdCreate();
      try {
        const before = openFdCount();
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, 0, [efd]);
        assert.equal(openFdCount(), before + 1, 'the server keeps exactly one copy');
        await setIrqs(c, { flags: NONE | TRIGGER, index: INTX, count: 0 });
        assert.equal(openFdCount(), before);
        assert.equal(h.server.irqs.heldFds, 0);
        // Disabling what has no vectors or nothing wired is fine.
        for (const index of [0, 2, 3, 4]) await setIrqs(c, { flags: NONE | TRIGGER, index, count: 0 });
      } finally {
        closeFds([efd]);
      }
    });
  });

  it('refuses count 0 with any other combination with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const flags of [NONE | MASK, NONE | UNMASK, BOOL | TRIGGER, EVENTFD | TRIGGER]) {
        await setIrqs(c, { flags, index: INTX, count: 0 }, Errno.EINVAL);
      }
    });
  });

  it('replacing a trigger eventfd closes the old copy', async () => {
    await withClient(h, async (c) => {
      const a = eventfdCreate();
      const b = eventfdCreate();
      try {
        const before = openFdCount();
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, 0, [a]);
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, 0, [b]);
        assert.equal(openFdCount(), before + 1);
        await raise(c);
        assert.deepEqual([eventfdConsume(a), eventfdConsume(b)], [0n, 1n]);
      } finally {
        closeFds([a, b]);
      }
    });
  });

  it('refuses vector ranges beyond the index\'s count with EINVAL (u32 overflow included)', async () => {
    await withClient(h, async (c) => {
      for (const [index, start, count] of [
        [INTX, 1, 1],
        [INTX, 0, 2],
        [INTX, 0xffffffff, 2],
        [INTX, 1, 0xffffffff],
        [MSI, 0, 2],
        [2, 0, 1],
        [4, 0, 1],
      ] as const) {
        await setIrqs(c, { flags: NONE | TRIGGER, index, start, count }, Errno.EINVAL);
      }
    });
  });

  it('refuses an index past the last irq index with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const index of [5, 0xffffffff]) await setIrqs(c, { flags: NONE | TRIGGER, index, count: 0 }, Errno.EINVAL);
    });
  });

  it('refuses flags without exactly one DATA_* and one ACTION_*, or with unknown bits, with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const flags of [0, NONE, TRIGGER, NONE | BOOL | TRIGGER, NONE | MASK | UNMASK, NONE | TRIGGER | 0x40, NONE | TRIGGER | 0x80000000]) {
        await setIrqs(c, { flags, index: INTX, count: 1, data: [1] }, Errno.EINVAL);
      }
    });
  });

  it('refuses a short payload and argsz below 20 with EINVAL', async () => {
    await withClient(h, async (c) => {
      for (const n of [0, 16, 19]) {
        await expectErrno(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: NONE | TRIGGER, index: INTX, count: 0 }).subarray(0, n), Errno.EINVAL);
      }
      for (const argsz of [0, 16, 19]) await setIrqs(c, { argsz, flags: NONE | TRIGGER, index: INTX, count: 0 }, Errno.EINVAL);
    });
  });

  it('refuses DATA_BOOL whose argsz or payload cannot hold one byte per vector with EINVAL', async () => {
    await withClient(h, async (c) => {
      await setIrqs(c, { argsz: 20, flags: BOOL | MASK, index: INTX, count: 1, data: [1] }, Errno.EINVAL);
      await setIrqs(c, { argsz: 21, flags: BOOL | MASK, index: INTX, count: 1, data: [] }, Errno.EINVAL);
    });
  });

  it('accepts a larger argsz', async () => {
    await withClient(h, async (c) => {
      await setIrqs(c, { argsz: 64, flags: NONE | UNMASK, index: INTX, count: 1 });
      await setIrqs(c, { argsz: 64, flags: BOOL | UNMASK, index: INTX, count: 1, data: [1] });
    });
  });

  it('refuses fds with DATA_NONE or DATA_BOOL, and a wrong number of eventfds, with EINVAL, closing them all', async () => {
    await withClient(h, async (c) => {
      await expectFdsRefused(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: NONE | TRIGGER, index: INTX, count: 1 }));
      await expectFdsRefused(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: NONE | TRIGGER, index: INTX, count: 0 }));
      await expectFdsRefused(c, Cmd.DEVICE_SET_IRQS, body.setIrqs({ flags: BOOL | TRIGGER, index: INTX, count: 1, data: [1] }));
      await assertServerClosesFds(2, async (fds) => {
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, Errno.EINVAL, fds);
      });
      await assertServerClosesFds(1, async (fds) => {
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, start: 1, count: 1 }, Errno.EINVAL, fds);
      });
      assert.equal(h.server.irqs.heldFds, 0);
    });
  });

  it('closes every interrupt eventfd when the client disconnects', async () => {
    const a = eventfdCreate();
    const b = eventfdCreate();
    const before = openFdCount();
    try {
      await withClient(h, async (c) => {
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: INTX, count: 1 }, 0, [a]);
        await setIrqs(c, { flags: EVENTFD | TRIGGER, index: MSI, count: 1 }, 0, [b]);
        assert.equal(h.server.irqs.heldFds, 2);
      });
      await turns();
      assert.equal(h.server.irqs.heldFds, 0);
      assert.equal(openFdCount(), before);
    } finally {
      closeFds([a, b]);
    }
  });
});
