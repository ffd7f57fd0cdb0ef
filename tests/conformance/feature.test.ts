/**
 * DEVICE_FEATURE (linux/vfio.h VFIO_DEVICE_FEATURE semantics over vfio-user): PROBE/GET/SET for
 * MIGRATION (1) and MIG_DEVICE_STATE (2), unknown features (ENOTTY), malformed requests
 * (EINVAL). Spec: "The reply payload must be the same as the request payload for setting or
 * probing a feature. For getting a feature's data, the data is added in the data section and
 * its length is added to argsz."
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { VfioUserClient } from '../../protocol/client.ts';
import { Cmd, Errno, type Harness, body, expectErrno, expectFdsRefused, le, rd, startServer, withClient, withFreshDevice } from './harness.ts';

const GET = 1 << 16;
const SET = 1 << 17;
const PROBE = 1 << 18;
const MIGRATION = 1;
const MIG_DEVICE_STATE = 2;
const STOP = 1;
const RUNNING = 2;

const feature = (c: VfioUserClient, argsz: number, flags: number, data: number[] | Buffer = [], errno = 0) =>
  expectErrno(c, Cmd.DEVICE_FEATURE, body.feature(argsz, flags, data), errno);
const state = (s: number) => le().u32(s).u32(0xffffffff).build();
const getState = async (c: VfioUserClient) => rd.u32(await feature(c, 16, MIG_DEVICE_STATE | GET), 8);

describe('DEVICE_FEATURE', () => {
  let h: Harness;
  before(() => {
    h = startServer();
  });
  after(() => h.close());

  it('probes MIGRATION for GET (supported) and SET (EINVAL); the probe reply is the request', async () => {
    await withFreshDevice(h, async (c) => {
      for (const flags of [MIGRATION | PROBE, MIGRATION | PROBE | GET]) {
        const req = body.feature(8, flags);
        assert.deepEqual([...(await expectErrno(c, Cmd.DEVICE_FEATURE, req, 0))], [...req]);
      }
      await feature(c, 8, MIGRATION | PROBE | SET, [], Errno.EINVAL);
      await feature(c, 8, MIGRATION | PROBE | GET | SET, [], Errno.EINVAL);
    });
  });

  it('echoes a probe whose argsz is larger than needed', async () => {
    await withFreshDevice(h, async (c) => {
      const b = await feature(c, 16, MIGRATION | PROBE | GET);
      assert.equal(b.byteLength, 8);
      assert.equal(rd.u32(b, 4), MIGRATION | PROBE | GET);
      assert.equal(rd.u32(b, 0), 16, 'spec: the probe reply payload is the request payload (argsz 16 echoed)');
    });
  });

  it('GETs MIGRATION: STOP_COPY, argsz = 8 + 8 even when more was offered', async () => {
    await withFreshDevice(h, async (c) => {
      for (const argsz of [16, 64]) {
        const b = await feature(c, argsz, MIGRATION | GET);
        assert.equal(b.byteLength, 16);
        assert.deepEqual([rd.u32(b, 0), rd.u32(b, 4), rd.u64(b, 8)], [16, MIGRATION | GET, 1n]);
      }
    });
  });

  it('refuses a GET whose argsz cannot hold the data with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      for (const argsz of [8, 15]) await feature(c, argsz, MIGRATION | GET, [], Errno.EINVAL);
      for (const argsz of [8, 15]) await feature(c, argsz, MIG_DEVICE_STATE | GET, [], Errno.EINVAL);
    });
  });

  it('refuses SET of MIGRATION with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await feature(c, 16, MIGRATION | SET, new Array(8).fill(0), Errno.EINVAL);
    });
  });

  it('probes MIG_DEVICE_STATE for GET, SET and both', async () => {
    await withFreshDevice(h, async (c) => {
      for (const flags of [PROBE, PROBE | GET, PROBE | SET, PROBE | GET | SET]) await feature(c, 8, MIG_DEVICE_STATE | flags);
    });
  });

  it('GETs and SETs MIG_DEVICE_STATE; the SET reply is the request', async () => {
    await withFreshDevice(h, async (c) => {
      const b = await feature(c, 16, MIG_DEVICE_STATE | GET);
      assert.deepEqual([rd.u32(b, 0), rd.u32(b, 8), rd.u32(b, 12)], [16, RUNNING, 0xffffffff]);
      const req = body.feature(16, MIG_DEVICE_STATE | SET, state(STOP));
      assert.deepEqual([...(await expectErrno(c, Cmd.DEVICE_FEATURE, req, 0))], [...req]);
      assert.equal(await getState(c), STOP);
      await feature(c, 16, MIG_DEVICE_STATE | SET, state(RUNNING));
      assert.equal(await getState(c), RUNNING);
    });
  });

  it('refuses SET of MIG_DEVICE_STATE with a short payload, or an argsz that does not cover it, with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await feature(c, 16, MIG_DEVICE_STATE | SET, [], Errno.EINVAL);
      await feature(c, 16, MIG_DEVICE_STATE | SET, [1, 0], Errno.EINVAL);
      // linux vfio_check_feature(): argsz below the feature's minimum size is EINVAL.
      await feature(c, 8, MIG_DEVICE_STATE | SET, state(STOP), Errno.EINVAL);
      await feature(c, 12, MIG_DEVICE_STATE | SET, state(STOP), Errno.EINVAL);
      assert.equal(await getState(c), RUNNING);
    });
  });

  it('refuses unsupported migration states with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      for (const s of [0, 5, 6, 7, 8, 0xffffffff]) await feature(c, 16, MIG_DEVICE_STATE | SET, state(s), Errno.EINVAL);
      assert.equal(await getState(c), RUNNING);
    });
  });

  it('refuses GET together with SET without PROBE, and neither without PROBE, with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      await feature(c, 16, MIG_DEVICE_STATE | GET | SET, state(STOP), Errno.EINVAL);
      await feature(c, 16, MIG_DEVICE_STATE, state(STOP), Errno.EINVAL);
      await feature(c, 16, MIGRATION, [], Errno.EINVAL);
      assert.equal(await getState(c), RUNNING);
    });
  });

  it('answers features it does not have (0, 3, DMA logging 6/7/8, 0xffff) with ENOTTY', async () => {
    await withFreshDevice(h, async (c) => {
      for (const f of [0, 3, 6, 7, 8, 0xffff]) {
        await feature(c, 8, f | PROBE, [], Errno.ENOTTY);
        await feature(c, 64, f | GET, [], Errno.ENOTTY);
      }
    });
  });

  it('refuses unknown flag bits with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      for (const bit of [1 << 19, 1 << 24, 0x80000000]) await feature(c, 16, MIGRATION | GET | bit, [], Errno.EINVAL);
    });
  });

  it('refuses a short payload and argsz below 8 with EINVAL', async () => {
    await withFreshDevice(h, async (c) => {
      for (const n of [0, 4, 7]) await expectErrno(c, Cmd.DEVICE_FEATURE, body.feature(16, MIGRATION | GET).subarray(0, n), Errno.EINVAL);
      for (const argsz of [0, 7]) await feature(c, argsz, MIGRATION | PROBE, [], Errno.EINVAL);
    });
  });

  it('refuses fds with EINVAL and closes them', async () => {
    await withClient(h, (c) => expectFdsRefused(c, Cmd.DEVICE_FEATURE, body.feature(16, MIGRATION | GET)));
  });
});
