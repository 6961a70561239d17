import type { Redis } from 'ioredis';
import type { StoredRowStatus } from '../report/row-result.ts';

/**
 * The Lua of a row's life in Redis, beside the keys it touches (src/store/keys.ts): what a row's
 * result says about doing it again, recording results, and claiming, committing or giving back
 * a document. A document's claim and commit touch the run's keys and the document's keys in one
 * step; all of them carry the API's hash tag, so they sit in one Redis Cluster slot.
 *
 * Results: a row's result is JSON in the run's `results` hash until the report has written it;
 * then it is retired, and what stays (dense runs only: rows 1..N) is its status in 3 bits of the
 * run's `status` bit field. Stored documents: `s` or `d` (doubt: an attempt may have reached the
 * server) and the first 8 bytes of the content's sha256, in bucketed hashes (StoredDocuments).
 */

/**
 * Status codes of the `status` bit field (u3 per row: 0 = no result, 7 codes). verified,
 * mismatch and missing are `idsync verify`'s; STATUS_NAME in ROW_STATE lists them in this order.
 */
export const STATUS_CODE: Readonly<Record<StoredRowStatus, number>> = { succeeded: 1, skipped: 2, failed: 3, rejected: 4, verified: 5, mismatch: 6, missing: 7 };

/**
 * The row rule, written once: a row whose job found what it was for is settled (never done
 * again): succeeded or skipped, or a verify's verified, mismatch or missing (a finding, not a
 * failure to try again); failed or rejected, it is done again by the run's next invocation; an
 * unreadable result counts as failed. Returns 'settled' | 'retry' | nil, and the result JSON (or
 * status code).
 */
const ROW_STATE = `
local STATUS_NAME = { 'succeeded', 'skipped', 'failed', 'rejected', 'verified', 'mismatch', 'missing' }
local SETTLED = { succeeded = true, skipped = true, verified = true, mismatch = true, missing = true }
local function is_dense(meta, row)
  return redis.call('hget', meta, 'dense') == '1' and tonumber(row) ~= nil and tonumber(row) < 1000000000
end
local function row_state(results, status, meta, row)
  local raw = redis.call('hget', results, row)
  if raw then
    local ok, r = pcall(cjson.decode, raw)
    if ok and type(r) == 'table' and type(r.status) == 'string' and SETTLED[r.status] then return 'settled', raw end
    return 'retry', raw
  end
  if is_dense(meta, row) then
    local code = redis.call('bitfield', status, 'GET', 'u3', '#' .. row)[1]
    if code > 0 and SETTLED[STATUS_NAME[code]] then return 'settled', code end
    if code > 0 then return 'retry', code end
  end
  return nil, nil
end
-- The status name of a row's current result, or nil.
local function row_status(results, status, meta, row)
  local raw = redis.call('hget', results, row)
  if raw then
    local ok, r = pcall(cjson.decode, raw)
    if ok and type(r) == 'table' and type(r.status) == 'string' then return r.status end
    return 'failed'
  end
  if is_dense(meta, row) then
    local code = redis.call('bitfield', status, 'GET', 'u3', '#' .. row)[1]
    if code > 0 then return STATUS_NAME[code] end
  end
  return nil
end
local function hex(s)
  return (s:gsub('.', function(c) return string.format('%02x', string.byte(c)) end))
end
`;

/**
 * Records results, several at once. KEYS: results, counts, status, meta, then per result the
 * stored-documents bucket and the document lock (the results key twice when the result commits
 * no document). ARGV per result: row, result JSON, status name, status code, document field ('' =
 * none), stored value, lock token. A row recorded twice moves its count from the old status.
 */
const RECORD = `${ROW_STATE}
local function record(i, a)
  local row = ARGV[a + 1]
  local prev = row_status(KEYS[1], KEYS[3], KEYS[4], row)
  if prev then redis.call('hincrby', KEYS[2], prev, -1) end
  if ARGV[a + 5] ~= '' then
    redis.call('hset', KEYS[5 + i * 2], ARGV[a + 5], ARGV[a + 6])
    if redis.call('get', KEYS[6 + i * 2]) == ARGV[a + 7] then redis.call('del', KEYS[6 + i * 2]) end
  end
  redis.call('hset', KEYS[1], row, ARGV[a + 2])
  if is_dense(KEYS[4], row) then redis.call('bitfield', KEYS[3], 'SET', 'u3', '#' .. row, ARGV[a + 4]) end
  redis.call('hincrby', KEYS[2], ARGV[a + 3], 1)
  return 'ok'
end
-- Each result on its own: one that fails (out of memory, say) answers 'error:…' and the others stand.
local out = {}
for i = 0, (#ARGV) / 7 - 1 do
  local ok, err = pcall(record, i, i * 7)
  if ok then out[#out + 1] = 'ok' else out[#out + 1] = 'error:' .. tostring(err) end
end
return out`;

/**
 * Before an invocation queues rows: KEYS results, counts, status, meta; ARGV[1] '1' to do settled
 * rows again too (their jobs then look whether the work is still there, e.g. a downloaded file),
 * then the rows. Per row: 'settled' (nothing to do), 'new', or 'redo' (its result is forgotten,
 * the counts follow, and it is done again).
 */
const PREPARE = `${ROW_STATE}
local out = {}
local recheck = ARGV[1] == '1'
for i = 2, #ARGV do
  local row = ARGV[i]
  local state = row_state(KEYS[1], KEYS[3], KEYS[4], row)
  if state == 'settled' and not recheck then out[i - 1] = 'settled'
  elseif state then
    local prev = row_status(KEYS[1], KEYS[3], KEYS[4], row)
    if prev then redis.call('hincrby', KEYS[2], prev, -1) end
    redis.call('hdel', KEYS[1], row)
    if is_dense(KEYS[4], row) then redis.call('bitfield', KEYS[3], 'SET', 'u3', '#' .. row, 0) end
    out[i - 1] = 'redo'
  else out[i - 1] = 'new' end
end
return out`;

/**
 * What jobs of one run ask before they start, several at once: KEYS results, status, meta; ARGV
 * rows. Per row: 'prior:<json>' or 'priorcode:<n>' (settled: return it), 'fatal:<message>' (the
 * run stopped), or 'go'.
 */
const JOB_START = `${ROW_STATE}
local fatal = redis.call('hget', KEYS[3], 'fatal')
local answers = {}
for i = 1, #ARGV do
  local state, prior = row_state(KEYS[1], KEYS[2], KEYS[3], ARGV[i])
  if state == 'settled' then
    if type(prior) == 'string' then answers[i] = 'prior:' .. prior else answers[i] = 'priorcode:' .. prior end
  elseif fatal then
    answers[i] = 'fatal:' .. fatal
  else
    answers[i] = 'go'
  end
end
return answers`;

/**
 * Claims documents, several at once. Per claim, KEYS: results, meta, status, stored bucket, lock;
 * ARGV: row, document field, token, ttl (ms), doubt value. Answers, in the order a job asks:
 * 'prior:…'/'priorcode:…' (the row is settled), 'fatal:…' (the run stopped), 'stored:<hex>'
 * (stored already, with the first 8 bytes of its sha256), 'busy' (another job holds it), or
 * 'claimed:' / 'claimed:<hex>' (the lock is ours; with the sha256 prefix an earlier attempt left
 * in doubt). A claimed document is marked in doubt at once: from here a crash leaves doubt, and
 * whoever comes next asks the API before sending.
 */
const CLAIM = `${ROW_STATE}
local function claim(k, a)
  local state, prior = row_state(KEYS[k], KEYS[k + 2], KEYS[k + 1], ARGV[a + 1])
  if state == 'settled' then
    if type(prior) == 'string' then return 'prior:' .. prior end
    return 'priorcode:' .. prior
  end
  local fatal = redis.call('hget', KEYS[k + 1], 'fatal')
  if fatal then return 'fatal:' .. fatal end
  local cur = redis.call('hget', KEYS[k + 3], ARGV[a + 2])
  if cur and string.sub(cur, 1, 1) == 's' then return 'stored:' .. hex(string.sub(cur, 2)) end
  if not redis.call('set', KEYS[k + 4], ARGV[a + 3], 'PX', ARGV[a + 4], 'NX') then return 'busy' end
  redis.call('hset', KEYS[k + 3], ARGV[a + 2], ARGV[a + 5])
  if cur then return 'claimed:' .. hex(string.sub(cur, 2)) end
  return 'claimed:'
end
local out = {}
for i = 0, (#ARGV) / 5 - 1 do
  local ok, state = pcall(claim, 1 + i * 5, i * 5)
  if ok then out[#out + 1] = state else out[#out + 1] = 'error:' .. tostring(state) end
end
return out`;

/**
 * Gives a claimed document back without storing it: KEYS bucket, lock; ARGV field, token, the
 * value the claim found ('' = none). Our doubt is taken back (an earlier attempt's doubt is put
 * back as it was); nothing happens when the lock is no longer ours.
 */
const GIVE_BACK = `if redis.call('get', KEYS[2]) ~= ARGV[2] then return 0 end
local cur = redis.call('hget', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, 1) == 'd' then
  if ARGV[3] == '' then redis.call('hdel', KEYS[1], ARGV[1]) else redis.call('hset', KEYS[1], ARGV[1], ARGV[3]) end
end
redis.call('del', KEYS[2])
return 1`;

/** KEYS bucket, lock; ARGV field, stored value, token: records a document as stored and releases its lock (whoever holds it then). */
const MARK_STORED = `redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end
return 1`;

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
/**
 * Export outputs: KEYS outputs hash; ARGV triples row, output, stemOnly. A file claims `file:<path>`;
 * a document whose extension the server decides claims `stem:<path>`, and conflicts with an
 * explicit output of that stem plus an extension (`ext:<stem>`), whichever row came first. Answers
 * the owning row per claim (the claimer's own row when it is free or already its own).
 */
const OUTPUTS = `local out = {}
local function claim(field, row)
  redis.call('hsetnx', KEYS[1], field, row)
  return redis.call('hget', KEYS[1], field)
end
for i = 1, #ARGV, 3 do
  local row, output = ARGV[i], ARGV[i + 1]
  local owner
  if ARGV[i + 2] == '1' then
    owner = claim('stem:' .. output, row)
    if owner == row then
      local ref = redis.call('hget', KEYS[1], 'ext:' .. output)
      if ref and ref ~= row then owner = ref end
    end
  else
    owner = claim('file:' .. output, row)
    local stem = string.match(output, '^(.*)%.[^./]+$')
    if owner == row and stem then
      local s = redis.call('hget', KEYS[1], 'stem:' .. stem)
      if s and s ~= row then owner = s else redis.call('hsetnx', KEYS[1], 'ext:' .. stem, row) end
    end
  end
  out[#out + 1] = owner
end
return out`;

const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

type Args = Array<string | Buffer>;

/** The scripts as ioredis commands: sent by SHA (EVALSHA), not as text on every call. */
export interface RowCommands {
  idsyncRecord(numberOfKeys: number, ...keysAndArgs: Args): Promise<string[]>;
  idsyncPrepare(numberOfKeys: number, ...keysAndArgs: Args): Promise<string[]>;
  idsyncJobStart(results: string, status: string, meta: string, ...rows: string[]): Promise<string[]>;
  idsyncClaim(numberOfKeys: number, ...keysAndArgs: Args): Promise<string[]>;
  idsyncGiveBack(bucket: string, lock: string, field: Buffer, token: string, previous: Buffer | string): Promise<number>;
  idsyncMarkStored(bucket: string, lock: string, field: Buffer, value: Buffer, token: string): Promise<number>;
  idsyncRelease(lock: string, token: string): Promise<number>;
  idsyncExtend(lock: string, token: string, ttlMs: string): Promise<number>;
  idsyncOutputs(outputs: string, ...args: string[]): Promise<string[]>;
}

/**
 * Defines the scripts on a connection, before its first command. With auto-pipelining, a
 * pipeline made before a defineCommand lacks the command, and ioredis then fails every call in
 * it and never answers some (ioredis #1931): so RedisHandle.connect calls this for every
 * connection it makes.
 */
export function rowCommands(redis: Redis): Redis & RowCommands {
  const r = redis as Redis & Partial<RowCommands>;
  if (!r.idsyncRecord) {
    redis.defineCommand('idsyncRecord', { lua: RECORD });
    redis.defineCommand('idsyncPrepare', { lua: PREPARE });
    redis.defineCommand('idsyncJobStart', { numberOfKeys: 3, lua: JOB_START });
    redis.defineCommand('idsyncClaim', { lua: CLAIM });
    redis.defineCommand('idsyncGiveBack', { numberOfKeys: 2, lua: GIVE_BACK });
    redis.defineCommand('idsyncMarkStored', { numberOfKeys: 2, lua: MARK_STORED });
    redis.defineCommand('idsyncRelease', { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand('idsyncExtend', { numberOfKeys: 1, lua: EXTEND });
    redis.defineCommand('idsyncOutputs', { numberOfKeys: 1, lua: OUTPUTS });
  }
  return r as Redis & RowCommands;
}

/** A batched script's answer per entry: `error:<message>` (that entry failed in Redis) becomes an Error. */
export function scriptAnswer(answer: string): string | Error {
  return answer.startsWith('error:') ? new Error(answer.slice('error:'.length)) : answer;
}
