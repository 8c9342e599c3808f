/**
 * Reads a compat layer's gzip stream the way Go's compress/gzip does, since that is what Istio's
 * fetcher reads it with: concatenated members, each header checked as Go checks it (magic,
 * method, FEXTRA, names and comments under 512 bytes, FHCRC), each trailer's CRC-32 and size
 * checked, and everything a member decodes handed on before a later error is reported. zlib's
 * own gunzip differs on exactly these points (it takes longer names, refuses reserved flag bits,
 * and drops the last output when trailing bytes are not gzip), so only the deflate data goes to
 * zlib (inflateRaw); the container is read here.
 *
 * Errors where Go's reader fails before handing on the data are NotCompatLayer (Istio moves on to
 * the next packaging). Corrupt deflate data is not: zlib drops what it decoded in the failing
 * write, so the mirror cannot know what Istio would have read, and refuses.
 */
import { crc32, createInflateRaw } from 'node:zlib';
import { WasmMirrorError } from '../errors.ts';
import { NotCompatLayer } from './formats.ts';

/** Deflate input handed to zlib at a time: bounds the output one write can produce (about 1000x). */
const SLICE = 32 * 1024;
/** Go reads a header's name and comment into a 512-byte buffer, NUL included. */
const MAX_HEADER_STRING = 512;
const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

type Step = 'fixed' | 'xlen' | 'extra' | 'name' | 'comment' | 'hcrc';

export class GzipMemberReader {
  readonly #onData: (chunk: Uint8Array) => Promise<void> | void;
  readonly #stopped: () => boolean;
  #state: 'header' | 'deflate' | 'trailer' = 'header';
  #members = 0;
  // Header parsing: the step, bytes still wanted for it, and the bytes gathered so far.
  #step: Step = 'fixed';
  #flags = 0;
  #want = 10;
  #gathered: number[] = [];
  #headerCrc = 0;
  #stringLength = 0;
  #inflater: RawInflater | undefined;
  #crc = 0;
  #size = 0;

  /**
   * `onData` gets the decoded bytes in order; once `stopped()` is true nothing more is decoded
   * (the caller has what it wanted and only drains the compressed bytes for their digest).
   */
  constructor(onData: (chunk: Uint8Array) => Promise<void> | void, stopped: () => boolean = () => false) {
    this.#onData = onData;
    this.#stopped = stopped;
  }

  async push(input: Uint8Array): Promise<void> {
    let rest = input;
    while (rest.length > 0 && !this.#stopped()) {
      if (this.#state === 'header') rest = this.#header(rest);
      else if (this.#state === 'deflate') rest = await this.#deflate(rest);
      else rest = this.#trailer(rest);
    }
  }

  /** End of the compressed input: the stream must end between members, as Go's reader wants. */
  async end(): Promise<void> {
    if (this.#state === 'header') {
      if (this.#step === 'fixed' && this.#gathered.length === 0) {
        if (this.#members === 0) throw new NotCompatLayer('compat layer is empty, not gzip');
        return;
      }
      throw new NotCompatLayer('compat layer ends inside a gzip header');
    }
    if (this.#state === 'deflate') {
      const inflater = this.#inflater!;
      this.#inflater = undefined;
      try {
        await this.#deliver(await inflater.finish());
      } catch (err) {
        if (err instanceof WasmMirrorError) throw err;
        throw new NotCompatLayer('compat layer ends inside its gzip data');
      }
    }
    throw new NotCompatLayer('compat layer ends before its gzip trailer');
  }

  destroy(): void {
    this.#inflater?.destroy();
    this.#inflater = undefined;
  }

  #header(input: Uint8Array): Uint8Array {
    let i = 0;
    while (i < input.length && this.#state === 'header') {
      const byte = input[i++]!;
      this.#gathered.push(byte);
      if (this.#step === 'name' || this.#step === 'comment') {
        this.#stringLength++;
        if (byte !== 0) {
          if (this.#stringLength >= MAX_HEADER_STRING) {
            throw new NotCompatLayer(`gzip header ${this.#step} is longer than Go's reader takes`);
          }
          continue;
        }
      } else if (this.#gathered.length < this.#want) {
        continue;
      }
      this.#headerStepDone();
    }
    return input.subarray(i);
  }

  #headerStepDone(): void {
    const bytes = Buffer.from(this.#gathered);
    this.#gathered = [];
    if (this.#step === 'fixed') {
      if (bytes[0] !== 0x1f || bytes[1] !== 0x8b || bytes[2] !== 8) {
        throw new NotCompatLayer(
          this.#members === 0
            ? 'compat layer is not gzip'
            : 'compat layer has bytes after its gzip data that are not another gzip member',
        );
      }
      this.#flags = bytes[3]!;
      this.#headerCrc = crc32(bytes);
      this.#nextStep('xlen');
    } else if (this.#step === 'hcrc') {
      if (bytes.readUInt16LE(0) !== (this.#headerCrc & 0xffff)) {
        throw new NotCompatLayer('gzip header checksum does not match');
      }
      this.#startDeflate();
    } else {
      this.#headerCrc = crc32(bytes, this.#headerCrc);
      const extraLength = this.#step === 'xlen' ? bytes.readUInt16LE(0) : 0;
      if (extraLength > 0) {
        this.#step = 'extra';
        this.#want = extraLength;
      } else {
        this.#nextStep(this.#step === 'name' ? 'comment' : this.#step === 'comment' ? 'hcrc' : 'name');
      }
    }
  }

  /** Moves to `step`, or past it when the header's flags say it is absent. */
  #nextStep(step: Step): void {
    const present: Record<Step, boolean> = {
      fixed: true,
      xlen: (this.#flags & FEXTRA) !== 0,
      extra: true,
      name: (this.#flags & FNAME) !== 0,
      comment: (this.#flags & FCOMMENT) !== 0,
      hcrc: (this.#flags & FHCRC) !== 0,
    };
    const order: Step[] = ['xlen', 'name', 'comment', 'hcrc'];
    for (const s of order.slice(order.indexOf(step))) {
      if (present[s]) {
        this.#step = s;
        this.#want = s === 'xlen' || s === 'hcrc' ? 2 : 0;
        this.#stringLength = 0;
        return;
      }
    }
    this.#startDeflate();
  }

  #startDeflate(): void {
    this.#state = 'deflate';
    this.#inflater = new RawInflater();
    this.#crc = 0;
    this.#size = 0;
  }

  async #deflate(input: Uint8Array): Promise<Uint8Array> {
    const inflater = this.#inflater!;
    let offset = 0;
    while (offset < input.length && !this.#stopped()) {
      const slice = input.subarray(offset, Math.min(input.length, offset + SLICE));
      let result: { output: Buffer[]; consumed: number };
      try {
        result = await inflater.write(slice);
      } catch (err) {
        throw new WasmMirrorError(
          'UNSUPPORTED_FORMAT',
          `compat layer's gzip data is corrupt (${(err as Error).message})`,
          { cause: err },
        );
      }
      await this.#deliver(result.output);
      offset += result.consumed;
      if (result.consumed < slice.length) {
        // The deflate stream ended inside this slice; its trailer follows.
        inflater.destroy();
        this.#inflater = undefined;
        this.#state = 'trailer';
        return input.subarray(offset);
      }
    }
    return input.subarray(offset);
  }

  async #deliver(output: Buffer[]): Promise<void> {
    for (const chunk of output) {
      if (this.#stopped()) return;
      this.#crc = crc32(chunk, this.#crc);
      this.#size = (this.#size + chunk.length) % 2 ** 32;
      await this.#onData(chunk);
    }
  }

  #trailer(input: Uint8Array): Uint8Array {
    const take = Math.min(8 - this.#gathered.length, input.length);
    for (let i = 0; i < take; i++) this.#gathered.push(input[i]!);
    if (this.#gathered.length === 8) {
      const trailer = Buffer.from(this.#gathered);
      this.#gathered = [];
      if (trailer.readUInt32LE(0) !== this.#crc >>> 0 || trailer.readUInt32LE(4) !== this.#size) {
        throw new NotCompatLayer('gzip member checksum or length does not match its data');
      }
      this.#members++;
      this.#state = 'header';
      this.#step = 'fixed';
      this.#want = 10;
    }
    return input.subarray(take);
  }
}

/**
 * zlib's raw inflate, one write at a time: the output of each write, and how much of the input
 * the deflate stream took (less than given once the stream has ended; zlib ignores the rest).
 */
class RawInflater {
  readonly #z = createInflateRaw();
  #output: Buffer[] = [];
  #ended = false;

  constructor() {
    this.#z.on('data', (chunk: Buffer) => this.#output.push(chunk));
    this.#z.on('end', () => {
      this.#ended = true;
    });
    // Errors reach the caller through write() and finish(); this keeps them from being unhandled.
    this.#z.on('error', () => {});
  }

  async write(chunk: Uint8Array): Promise<{ output: Buffer[]; consumed: number }> {
    const before = this.#z.bytesWritten;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#z.once('error', onError);
      this.#z.write(chunk, (err) => {
        this.#z.off('error', onError);
        if (err) reject(err);
        else resolve();
      });
    });
    // Output is pushed before the write's callback; anything still buffered is read out here.
    while (this.#z.readableLength > 0) await new Promise(setImmediate);
    const output = this.#output;
    this.#output = [];
    return { output, consumed: this.#z.bytesWritten - before };
  }

  /** No more input: the output still held back, or an error when the deflate stream is incomplete. */
  async finish(): Promise<Buffer[]> {
    if (!this.#ended) {
      await new Promise<void>((resolve, reject) => {
        this.#z.once('error', reject);
        this.#z.once('end', resolve);
        this.#z.end();
      });
    }
    const output = this.#output;
    this.#output = [];
    return output;
  }

  destroy(): void {
    this.#z.destroy();
  }
}
