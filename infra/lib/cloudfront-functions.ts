/**
 * The code of the registry API's two CloudFront Functions (infra/cloudfront/), read at synth. The
 * viewer-request one maps `/v2/…` to the publisher's `registry/` objects and answers what it can
 * without the bucket; the viewer-response one turns those objects' metadata into the registry's
 * headers. Both run on cloudfront-js-1.0, hence plain ES5 files rather than TypeScript.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeploymentError } from './deployment.ts';
import { REPO_ROOT } from './paths.ts';

/** CloudFront Functions refuse code larger than this. */
export const CLOUDFRONT_FUNCTION_MAX_BYTES = 10 * 1024;

/** The line of registry-request.js that synth replaces with the configured source ids. */
export const SOURCE_IDS_PLACEHOLDER = '__SOURCE_IDS__';

const FUNCTIONS_DIR = join(REPO_ROOT, 'infra', 'cloudfront');

/**
 * `code` with its source-ids placeholder replaced by the ids as a JSON array, so no id can end
 * the array or the statement, whatever it holds (ids are validated by the config too). Throws
 * unless the placeholder is there exactly once.
 */
export function substituteSourceIds(code: string, sourceIds: readonly string[]): string {
  const at = code.indexOf(SOURCE_IDS_PLACEHOLDER);
  if (at === -1 || code.indexOf(SOURCE_IDS_PLACEHOLDER, at + 1) !== -1) {
    throw new Error(`the registry request function must hold ${SOURCE_IDS_PLACEHOLDER} exactly once`);
  }
  // JSON leaves U+2028 and U+2029 as they are, and ES5 reads them as line ends inside a string.
  const ids = JSON.stringify([...sourceIds])
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
  return code.slice(0, at) + ids + code.slice(at + SOURCE_IDS_PLACEHOLDER.length);
}

/**
 * A function's file without its comment-only and blank lines: what CloudFront runs counts
 * against its size limit, the explanations are for whoever reads the file.
 */
function loadFunction(file: string): string {
  const text = readFileSync(join(FUNCTIONS_DIR, file), 'utf8');
  return `${text
    .split('\n')
    .filter((line) => !/^\s*(?:\/\/.*)?$/.test(line))
    .join('\n')}\n`;
}

/**
 * The viewer-request function for `/v2*`, serving the names of these sources. Refuses at synth
 * when so many sources would make the function larger than CloudFront accepts.
 */
export function registryRequestCode(sourceIds: readonly string[]): string {
  const code = substituteSourceIds(loadFunction('registry-request.js'), sourceIds);
  const size = Buffer.byteLength(code);
  if (size > CLOUDFRONT_FUNCTION_MAX_BYTES) {
    throw new DeploymentError(
      `the ${sourceIds.length} source ids make the /v2/ CloudFront Function ${size} bytes, over CloudFront's ${CLOUDFRONT_FUNCTION_MAX_BYTES}: use fewer or shorter source ids`,
    );
  }
  return code;
}

/** The viewer-response function for `/v2*`. */
export function registryResponseCode(): string {
  return loadFunction('registry-response.js');
}
