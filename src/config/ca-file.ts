import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';

/**
 * The PEM text of a CA file (--ca-file, --redis-ca-file), checked: Node skips what it cannot parse
 * in a `ca` list without a word, and the run would then fail later with "unable to verify the first
 * certificate". The one check, made when the settings are read and again where the file is used.
 */
export function readCaPem(file: string, setting: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${setting} ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); give the path of a PEM file with the CA certificate(s)`, setting);
  }
  try {
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no "-----BEGIN CERTIFICATE-----" block');
    new X509Certificate(pem);
  } catch (err) {
    throw new ConfigError(`${setting} ${file} holds no readable PEM certificate (${(err as Error).message}); give the CA certificate(s) in PEM form`, setting);
  }
  return pem;
}
