/** `wasm-mirror keygen`: a P-256 key pair for embedded signing. */
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPairPem, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../adapters/local/signer.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { keyIdOf, trustedKeyFrom } from '../../core/manifest/index.ts';
import { errnoCode, writeNewFile } from '../../platform/files.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const USAGE = `usage: wasm-mirror keygen [--out DIR]

Writes DIR/${PRIVATE_KEY_FILE} (mode 0600) and DIR/${PUBLIC_KEY_FILE}, never overwriting, and
prints the keyid. Give agents the public key (or the mirror's keys.json) as --trusted-keys.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    false,
  );
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  const dir = values.out ?? '.';
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { privateKeyPem, publicKeyPem } = generateKeyPairPem();
  const privPath = join(dir, PRIVATE_KEY_FILE);
  const pubPath = join(dir, PUBLIC_KEY_FILE);
  for (const path of [privPath, pubPath]) {
    if (
      await access(path).then(
        () => true,
        () => false,
      )
    ) {
      throw new WasmMirrorError('ALREADY_EXISTS', `${path} exists; refusing to overwrite a key`);
    }
  }
  await writeNew(privPath, privateKeyPem, 0o600);
  await writeNew(pubPath, publicKeyPem, 0o644);
  const keyid = keyIdOf(trustedKeyFrom(publicKeyPem).spki);
  io.stdout.write(`private key: ${privPath}\npublic key:  ${pubPath}\nkeyid:       ${keyid}\n`);
  return 0;
}

async function writeNew(path: string, text: string, mode: number): Promise<void> {
  try {
    await writeNewFile(path, text, { mode, exactMode: true });
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') {
      throw new WasmMirrorError('ALREADY_EXISTS', `${path} exists; refusing to overwrite a key`);
    }
    throw err;
  }
}
