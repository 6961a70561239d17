import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, requireApiSettings } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';
import { apiKey } from '../../src/store/keys.ts';
import { tempDir } from '../helpers/fixtures.ts';

function configFile(data: unknown): string {
  const dir = tempDir();
  const file = path.join(dir, 'idsync.json');
  writeFileSync(file, JSON.stringify(data));
  return file;
}

describe('loadConfig precedence', () => {
  it('uses defaults when nothing is given', () => {
    const c = loadConfig({ env: { HOME: '/home/ops' }, cwd: '/srv' });
    expect(c.concurrency).toBe(8);
    expect(c.concurrencyMode).toBe('fixed');
    expect(c.attempts).toBe(5);
    expect(c.insecure).toBe(false);
    // The user's, never the working directory's: a rerun from another folder finds its state.
    expect(c.stateDir).toBe('/home/ops/.local/state/idsync');
    expect(loadConfig({ env: { HOME: '/home/ops', XDG_STATE_HOME: '/var/state' }, cwd: '/srv' }).stateDir).toBe('/var/state/idsync');
    expect(loadConfig({ env: { HOME: '/home/ops', XDG_STATE_HOME: 'relative' }, cwd: '/srv' }).stateDir).toBe('/home/ops/.local/state/idsync');
    expect(c.origins.concurrency).toBe('default');
    expect(c.apiUrl).toBeUndefined();
  });

  it('flag beats environment beats file beats default', () => {
    const file = configFile({ concurrency: 3, attempts: 7, rate: 11, apiUrl: 'https://file.example/identities' });
    const env = { IDSYNC_CONFIG: file, IDSYNC_CONCURRENCY: '4', IDSYNC_ATTEMPTS: '9' };
    const c = loadConfig({ env, flags: { concurrency: '5' } });
    expect(c.concurrency).toBe(5);
    expect(c.origins.concurrency).toBe('flag');
    expect(c.attempts).toBe(9);
    expect(c.origins.attempts).toBe('env');
    expect(c.rate).toBe(11);
    expect(c.origins.rate).toBe('file');
    expect(c.apiUrl).toBe('https://file.example/identities');
    expect(c.workers).toBe(1);
  });

  it('--config flag beats IDSYNC_CONFIG', () => {
    const a = configFile({ attempts: 2 });
    const b = configFile({ attempts: 3 });
    expect(loadConfig({ env: { IDSYNC_CONFIG: a }, flags: { config: b } }).attempts).toBe(3);
  });

  it('keeps the path prefix and drops a trailing slash', () => {
    const c = loadConfig({ env: { IDSYNC_API_URL: 'https://acme.econnectcloud.com/identities/' } });
    expect(c.apiUrl).toBe('https://acme.econnectcloud.com/identities');
  });

  it.each([
    ['HTTP://Sandbox:6009/', 'http://sandbox:6009'],
    ['http://sandbox:80/identities', 'http://sandbox/identities'],
    ['https://ACME.econnectcloud.com:443/identities//', 'https://acme.econnectcloud.com/identities'],
    ['https://acme.econnectcloud.com/Identities', 'https://acme.econnectcloud.com/Identities'],
    ['https://10.0.0.5:5009', 'https://10.0.0.5:5009'],
    ['http://[::1]:6009/', 'http://[::1]:6009'],
    ['  https://x.example/a/../identities/ ', 'https://x.example/identities'],
  ])('spells the API URL %s one way: %s', (given, normal) => {
    expect(loadConfig({ env: { IDSYNC_API_URL: given } }).apiUrl).toBe(normal);
  });

  it('gives the same queue to spellings of one URL, and another to another host name or path case', () => {
    const queueOf = (url: string) => apiKey(loadConfig({ env: { IDSYNC_API_URL: url } }).apiUrl!);
    expect(queueOf('HTTP://SANDBOX:6009/')).toBe(queueOf('http://sandbox:6009'));
    expect(queueOf('https://x.example:443/identities/')).toBe(queueOf('https://x.example/identities'));
    expect(queueOf('http://127.0.0.1:6009')).not.toBe(queueOf('http://sandbox:6009'));
    expect(queueOf('https://x.example/Identities')).not.toBe(queueOf('https://x.example/identities'));
  });

  it('resolves paths in a config file against the file folder', () => {
    const file = configFile({ stateDir: 'state', reportDir: 'reports' });
    const c = loadConfig({ env: {}, flags: { config: file }, cwd: '/elsewhere' });
    expect(c.stateDir).toBe(path.join(path.dirname(file), 'state'));
    expect(c.reportDir).toBe(path.join(path.dirname(file), 'reports'));
  });

  it('reads --concurrency auto (flag, environment or file, any case) with its maximum', () => {
    const auto = loadConfig({ env: {}, flags: { concurrency: 'auto' } });
    expect(auto).toMatchObject({ concurrency: 64, concurrencyMode: 'auto' });
    expect(loadConfig({ env: { IDSYNC_CONCURRENCY: 'AUTO', IDSYNC_CONCURRENCY_MAX: '16' } })).toMatchObject({ concurrency: 16, concurrencyMode: 'auto' });
    const file = configFile({ concurrency: 'auto', concurrencyMax: 24 });
    const fromFile = loadConfig({ env: { IDSYNC_CONFIG: file } });
    expect(fromFile).toMatchObject({ concurrency: 24, concurrencyMode: 'auto' });
    expect(fromFile.origins).toMatchObject({ concurrency: 'file', concurrencyMax: 'file' });
    // A maximum set for auto runs (say in the environment) does not change a fixed number.
    expect(loadConfig({ env: { IDSYNC_CONCURRENCY_MAX: '16' }, flags: { concurrency: '32' } })).toMatchObject({ concurrency: 32, concurrencyMode: 'fixed' });
  });

  it('reads booleans from the environment', () => {
    expect(loadConfig({ env: { IDSYNC_INSECURE_TLS: '1' } }).insecure).toBe(true);
    expect(loadConfig({ env: { IDSYNC_INSECURE_TLS: 'no' } }).insecure).toBe(false);
  });
});

describe('manifest settings', () => {
  it('takes --delimiter as one character or tab, and --encoding by any iconv-lite name', () => {
    expect(loadConfig({ env: {} })).toMatchObject({ delimiter: undefined, encoding: undefined });
    expect(loadConfig({ env: {}, flags: { delimiter: ';', encoding: 'latin1' } })).toMatchObject({ delimiter: ';', encoding: 'latin1' });
    expect(loadConfig({ env: { IDSYNC_DELIMITER: 'tab', IDSYNC_ENCODING: 'Windows-1252' } })).toMatchObject({ delimiter: '\t', encoding: 'Windows-1252' });
    expect(loadConfig({ env: {}, flags: { delimiter: '\\t' } }).delimiter).toBe('\t');
    expect(loadConfig({ env: {}, flags: { delimiter: '|', encoding: ' utf-16le ' } })).toMatchObject({ delimiter: '|', encoding: 'utf-16le' });
  });
});

describe('retry budget settings (watch)', () => {
  it('default to 6 h with waits of at most 5 min, and take durations as people write them', () => {
    expect(loadConfig({ env: {} })).toMatchObject({ retryBudgetMs: 6 * 3_600_000, retryMaxDelayMs: 300_000 });
    expect(loadConfig({ env: {}, flags: { retryBudget: '90m', retryMaxDelay: '30s' } })).toMatchObject({ retryBudgetMs: 5_400_000, retryMaxDelayMs: 30_000 });
    expect(loadConfig({ env: { IDSYNC_RETRY_BUDGET: '1h30m', IDSYNC_RETRY_MAX_DELAY: '200ms' } })).toMatchObject({ retryBudgetMs: 5_400_000, retryMaxDelayMs: 200 });
    expect(loadConfig({ env: {}, flags: { config: configFile({ retryBudget: '2d' }) } }).retryBudgetMs).toBe(2 * 86_400_000);
    expect(loadConfig({ env: {}, flags: { retryBudget: '0' } }).retryBudgetMs).toBe(0);
    expect(loadConfig({ env: {}, flags: { config: configFile({ retryBudget: 0 }) } }).retryBudgetMs).toBe(0);
  });

  it.each([
    [{ retryBudget: '6' }, /--retry-budget must be a duration with a unit, e\.g\. 6h, 90m, 30s or 500ms \(0 = none\) \(got "6"\)/],
    [{ retryBudget: 'six hours' }, /--retry-budget must be a duration with a unit/],
    [{ retryBudget: '31d' }, /--retry-budget must be 0 or between 1s and 30d/],
    [{ retryMaxDelay: '0' }, /--retry-max-delay must be more than 0/],
    [{ retryMaxDelay: '2h' }, /--retry-max-delay must be 0 or between 50ms and 1h/],
  ])('rejects %o', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrowError(message);
  });
});

describe('loadConfig validation', () => {
  const cases: Array<[string, Parameters<typeof loadConfig>[0], RegExp]> = [
    ['non-numeric flag', { env: {}, flags: { concurrency: 'lots' } }, /--concurrency must be a whole number or auto \(got "lots"\)/],
    ['fractional concurrency', { env: {}, flags: { concurrency: '2.5' } }, /--concurrency must be a whole number or auto \(got "2.5"\)/],
    ['zero concurrency from env', { env: { IDSYNC_CONCURRENCY: '0' } }, /IDSYNC_CONCURRENCY \(environment\) must be at least 1 \(or auto/],
    ['huge concurrency in a file', { env: { IDSYNC_CONFIG: 'FILE:{"concurrency":5000}' } }, /"concurrency" in .* must be at most 1024 \(got 5000\)/],
    ['zero --concurrency-max', { env: {}, flags: { concurrency: 'auto', concurrencyMax: '0' } }, /--concurrency-max must be at least 1 \(got "0"\)/],
    ['non-numeric IDSYNC_CONCURRENCY_MAX', { env: { IDSYNC_CONCURRENCY_MAX: 'many' } }, /IDSYNC_CONCURRENCY_MAX \(environment\) must be a whole number/],
    ['bad URL', { env: { IDSYNC_API_URL: 'ftp://x' } }, /IDSYNC_API_URL \(environment\) must be an http:\/\/ or https:\/\/ URL/],
    ['URL with credentials', { env: {}, flags: { apiUrl: 'https://u:p@x.example' } }, /--api-url must not carry credentials/],
    ['bad Redis URL', { env: { REDIS_URL: 'localhost:6379' } }, /REDIS_URL \(environment\) must be a redis:\/\//],
    ['bad log level', { env: {}, flags: { logLevel: 'loud' } }, /--log-level must be one of/],
    ['bad boolean', { env: { IDSYNC_INSECURE_TLS: 'maybe' } }, /IDSYNC_INSECURE_TLS \(environment\) must be 1\/0/],
    ['unreadable CA file', { env: {}, flags: { caFile: '/no/such/ca.pem' } }, /--ca-file \/no\/such\/ca.pem cannot be read/],
    ['a two-character delimiter', { env: {}, flags: { delimiter: ';;' } }, /--delimiter must be one character/],
    ['a quote as delimiter', { env: { IDSYNC_DELIMITER: '"' } }, /IDSYNC_DELIMITER \(environment\) cannot be a quote/],
    ['an unknown encoding', { env: {}, flags: { encoding: 'klingon' } }, /--encoding is not an encoding idsync knows; use a name like utf-8, latin1, cp1252/],
  ];
  for (const [name, given, message] of cases) {
    it(`rejects ${name}`, () => {
      // A config file's content, written when the case runs.
      const file = given?.env?.IDSYNC_CONFIG?.startsWith('FILE:') ? configFile(JSON.parse(given.env.IDSYNC_CONFIG.slice(5))) : undefined;
      const options = file ? { ...given, env: { ...given!.env, IDSYNC_CONFIG: file } } : given;
      expect(() => loadConfig(options)).toThrowError(ConfigError);
      expect(() => loadConfig(options)).toThrowError(message);
    });
  }

  it('names the config file key that is wrong', () => {
    const file = configFile({ attempts: 'many' });
    expect(() => loadConfig({ env: {}, flags: { config: file } })).toThrowError(/"attempts" in .*idsync\.json must be a whole number/);
  });

  it('refuses unknown keys and secrets in a config file', () => {
    expect(() => loadConfig({ env: {}, flags: { config: configFile({ concurency: 3 }) } })).toThrowError(/unknown setting "concurency"/);
    expect(() => loadConfig({ env: {}, flags: { config: configFile({ password: 'x' }) } })).toThrowError(/secrets are never read from config files/);
  });

  it('reports a config file that is not JSON or missing', () => {
    const dir = tempDir();
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, '{ not json');
    expect(() => loadConfig({ env: {}, flags: { config: bad } })).toThrowError(/is not valid JSON/);
    expect(() => loadConfig({ env: {}, flags: { config: path.join(dir, 'none.json') } })).toThrowError(/cannot read config file/);
  });
});

describe('password', () => {
  it('comes from IDSYNC_PASSWORD and prints as redacted', () => {
    const c = loadConfig({ env: { IDSYNC_PASSWORD: 's3cret-pw' } });
    expect(c.password?.reveal()).toBe('s3cret-pw');
    expect(JSON.stringify(c)).not.toContain('s3cret-pw');
    expect(String(c.password)).toBe('[redacted]');
  });

  it('comes from IDSYNC_PASSWORD_FILE without the trailing newline', () => {
    const dir = tempDir();
    const file = path.join(dir, 'pw');
    writeFileSync(file, 'from-file\n');
    expect(loadConfig({ env: { IDSYNC_PASSWORD_FILE: file } }).password?.reveal()).toBe('from-file');
  });

  it('refuses both at once, and an empty file', () => {
    const dir = tempDir();
    const file = path.join(dir, 'pw');
    writeFileSync(file, '\n');
    expect(() => loadConfig({ env: { IDSYNC_PASSWORD_FILE: file } })).toThrowError(/is empty/);
    expect(() => loadConfig({ env: { IDSYNC_PASSWORD_FILE: file, IDSYNC_PASSWORD: 'x' } })).toThrowError(/keep only one/);
  });

  it('requireApiSettings lists every missing connection setting', () => {
    const c = loadConfig({ env: { IDSYNC_API_URL: 'http://127.0.0.1:1' } });
    expect(() => requireApiSettings(c)).toThrowError(/--username \(or IDSYNC_USERNAME\), IDSYNC_PASSWORD or IDSYNC_PASSWORD_FILE/);
  });
});

describe('--workers', () => {
  it('is 0 or 1, with a hint for more throughput', () => {
    expect(loadConfig({ env: {}, flags: { workers: '0' } }).workers).toBe(0);
    expect(() => loadConfig({ env: {}, flags: { workers: '4' } })).toThrowError(/--workers must be 0 .* or 1 .*start more `idsync worker` processes/);
  });
});

describe('--metrics-listen (#16)', () => {
  it.each([
    ['127.0.0.1:9464', { host: '127.0.0.1', port: 9464 }],
    [':9464', { host: '127.0.0.1', port: 9464 }],
    ['[::1]:9464', { host: '::1', port: 9464 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
  ])('%s → %j', (text, listen) => {
    expect(loadConfig({ env: { IDSYNC_METRICS_LISTEN: text } }).metricsListen).toEqual(listen);
    expect(loadConfig({ flags: { metricsListen: text } }).metricsListen).toEqual(listen);
  });

  it.each(['9464', 'localhost', 'host:99999', '::1:9464'])('refuses %s, naming the setting', (text) => {
    expect(() => loadConfig({ env: { IDSYNC_METRICS_LISTEN: text } })).toThrow(/IDSYNC_METRICS_LISTEN \(environment\) must be HOST:PORT/);
  });

  it('is off by default', () => {
    expect(loadConfig({ env: {} }).metricsListen).toBeUndefined();
  });
});
