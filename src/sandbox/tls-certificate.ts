import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';

export interface TlsMaterial {
  cert: string;
  key: string;
  /** PEM file a client passes as --ca-file (the self-signed certificate itself) */
  caFile: string;
}

/**
 * A self-signed certificate for 127.0.0.1 and localhost, made with the `openssl` on PATH
 * (no internet, no extra package). Kept in `dir` and reused, so a client's --ca-file stays
 * valid across restarts with the same --dir.
 */
export function selfSignedCertificate(dir: string): TlsMaterial {
  mkdirSync(dir, { recursive: true });
  const certFile = path.join(dir, 'sandbox-ca.pem');
  const keyFile = path.join(dir, 'sandbox-key.pem');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    try {
      execFileSync(
        'openssl',
        [
          'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '825',
          '-subj', '/CN=idsync sandbox',
          '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
          '-addext', 'basicConstraints=critical,CA:TRUE',
          '-keyout', keyFile, '-out', certFile,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
    } catch (err) {
      throw new ConfigError(`cannot generate a self-signed certificate with openssl (${(err as Error).message.split('\n')[0]}); install openssl or pass --cert and --key`, '--tls');
    }
  }
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), caFile: certFile };
}
