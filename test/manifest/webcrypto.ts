/**
 * A second, independent verifier for manifest signatures: WebCrypto, which takes ECDSA
 * signatures as raw r||s (IEEE P1363) rather than DER. The DER decoding and the DSSE PAE are
 * rebuilt here from the specifications, so nothing of the code under test is reused.
 */
import { webcrypto } from 'node:crypto';

const P256_FIELD_BYTES = 32;

/** ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (DER) → r||s, each left-padded to 32 bytes. */
export function derToRawSignature(der: Uint8Array): Uint8Array {
  let at = 0;
  const byte = () => {
    const b = der[at++];
    if (b === undefined) throw new Error('DER signature is truncated');
    return b;
  };
  const length = () => {
    const first = byte();
    if (first < 0x80) return first;
    if (first === 0x81) return byte();
    throw new Error('DER length form not expected in a P-256 signature');
  };
  const integer = () => {
    if (byte() !== 0x02) throw new Error('expected a DER INTEGER');
    const len = length();
    let value = der.subarray(at, at + len);
    at += len;
    if (value.length !== len) throw new Error('DER INTEGER is truncated');
    // A leading zero only keeps a high bit from reading as a sign.
    while (value.length > 1 && value[0] === 0) value = value.subarray(1);
    if (value.length > P256_FIELD_BYTES) throw new Error('DER INTEGER is too large for P-256');
    const out = new Uint8Array(P256_FIELD_BYTES);
    out.set(value, P256_FIELD_BYTES - value.length);
    return out;
  };
  if (byte() !== 0x30) throw new Error('expected a DER SEQUENCE');
  if (length() !== der.length - at) throw new Error('DER SEQUENCE length does not match');
  const r = integer();
  const s = integer();
  if (at !== der.length) throw new Error('trailing bytes after the DER signature');
  const raw = new Uint8Array(2 * P256_FIELD_BYTES);
  raw.set(r, 0);
  raw.set(s, P256_FIELD_BYTES);
  return raw;
}

/** DSSE v1 PAE, written out from the spec: "DSSEv1" SP len(type) SP type SP len(body) SP body. */
function paeOf(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'ascii'),
    type,
    Buffer.from(` ${payload.length} `, 'ascii'),
    payload,
  ]);
}

/** Whether WebCrypto (ECDSA P-256, SHA-256) accepts the envelope's first signature over the PAE. */
export async function webCryptoVerifies(
  envelope: { payload: string; payloadType: string; signatures: { sig: string }[] },
  spki: Uint8Array,
): Promise<boolean> {
  const key = await webcrypto.subtle.importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'verify',
  ]);
  const der = Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64');
  const message = paeOf(envelope.payloadType, Buffer.from(envelope.payload, 'base64'));
  return webcrypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, derToRawSignature(der), message);
}
