// Self-test of the harness: the throwaway redis-server and PostgreSQL cluster start, answer
// and stop.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startPostgres, startRedis } from './lib/index.mjs';

describe('harness', { timeout: 90000 }, () => {
  let redis;
  let pg;

  before(async () => {
    [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
  });
  after(async () => {
    await Promise.all([redis?.stop(), pg?.stop()]);
  });

  it('starts redis-server on a loopback port', async () => {
    assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await redis.command('SET', 'k', 'v'), '+OK\r\n');
    assert.equal(await redis.command('GET', 'k'), '$1\r\nv\r\n');
  });

  it('starts PostgreSQL 15 with the omniroute database', async () => {
    assert.match(pg.url, /^postgresql:\/\/postgres@127\.0\.0\.1:\d+\/omniroute$/);
    assert.equal((await pg.query('select current_database()')).trim(), 'omniroute');
    assert.match(await pg.query('show server_version'), /^15\./);
    await pg.query('create table t (id int, name text)');
    await pg.query("insert into t values (1, 'a'), (2, 'b''s')");
    assert.deepEqual(await pg.rows('select * from t order by id'), [{ id: 1, name: 'a' }, { id: 2, name: "b's" }]);
  });

  it('stops PostgreSQL cleanly', async () => {
    const e = await pg.stop();
    assert.equal(e.code, 0, `postgres exit ${JSON.stringify(e)}\n${pg.proc.tail(20)}`);
    pg = null;
  });
});
