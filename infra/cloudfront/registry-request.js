// The registry API's viewer-request function (CloudFront Functions, cloudfront-js-1.0: ES5.1 only).
// Maps a pull request under /v2/ to its object under registry/ (shared/core/storage-keys.ts,
// registryKeys) or answers it itself, as shared/embedded/oci-endpoint.ts does: writes are 405,
// a path with percent-encoding, a backslash, an empty, . or .. segment is refused before routing,
// and a name outside the configured sources is NAME_UNKNOWN. Nothing here may let a write through.
var SOURCE_IDS = __SOURCE_IDS__;

var COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
var NAME = new RegExp('^' + COMPONENT + '(?:/' + COMPONENT + ')+$');
var SHA256 = /^sha256:[a-f0-9]{64}$/;
var ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
var TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
var NO_DOTS = 'a path must not hold percent-encoded characters, empty segments, or . or .. segments';
var STATUS = { 200: 'OK', 400: 'Bad Request', 404: 'Not Found', 405: 'Method Not Allowed' };

function reply(status, body, head, allow) {
  var headers = {
    'content-type': { value: 'application/json; charset=utf-8' },
    'docker-distribution-api-version': { value: 'registry/2.0' },
    'cache-control': { value: 'no-store' },
    'x-content-type-options': { value: 'nosniff' },
  };
  if (allow) headers.allow = { value: allow };
  var response = { statusCode: status, statusDescription: STATUS[status], headers: headers };
  if (!head) response.body = { encoding: 'text', data: JSON.stringify(body) };
  return response;
}

function fail(status, code, message, head, name, allow) {
  var error = { code: code, message: message };
  if (name !== undefined) error.detail = { name: name };
  return reply(status, { errors: [error] }, head, allow);
}

function unknown(code, name, head) {
  var what = code === 'BLOB_UNKNOWN' ? 'blob' : 'manifest';
  var why = code === 'BLOB_UNKNOWN' ? 'what a listed manifest reaches' : 'what the signed manifest lists';
  return fail(404, code, what + ' unknown to ' + name + ': only ' + why + ' is served', head, name);
}

// undefined for a well-formed sha256 digest, else the error to answer (`code` names the unknown kind).
function digestProblem(digest, code, name, head) {
  if (SHA256.test(digest)) return undefined;
  if (digest.indexOf('sha256:') === 0 || !ANY_DIGEST.test(digest)) {
    return fail(400, 'DIGEST_INVALID', 'invalid digest ' + JSON.stringify(digest), head);
  }
  return unknown(code, name, head);
}

// The value of a query parameter (the first one when repeated), or undefined.
function param(query, key) {
  // biome-ignore lint/suspicious/noPrototypeBuiltins: Object.hasOwn is not in ES5.1
  var own = query ? Object.prototype.hasOwnProperty.call(query, key) : false;
  var value = own && query[key] ? query[key].value : undefined;
  return typeof value === 'string' ? value : undefined;
}

function badPath(rest) {
  var segments = rest.split('/');
  var i;
  if (/[%\\]/.test(rest)) return true;
  for (i = 0; i < segments.length; i++) {
    if (segments[i] === '' || segments[i] === '.' || segments[i] === '..') return true;
  }
  return false;
}

// What is wrong with a tags/list query, if anything.
function queryProblem(n, last, head) {
  if (n !== undefined && !/^\d{1,9}$/.test(n))
    return fail(400, 'UNSUPPORTED', 'n must be a whole number', head);
  if (last !== undefined && !TAG.test(last)) return fail(400, 'UNSUPPORTED', 'last must be a tag', head);
  return undefined;
}

// biome-ignore lint/correctness/noUnusedVariables: CloudFront calls it
function handler(event) {
  var request = event.request;
  var method = request.method;
  var head = method === 'HEAD';
  var uri = typeof request.uri === 'string' ? request.uri : '';
  var noEndpoint = 'no such endpoint: this registry serves manifests, blobs and tags';
  var rest, tags, manifest, blob, match, name, key, n, last, problem;
  if (method !== 'GET' && !head) {
    return fail(405, 'UNSUPPORTED', 'this registry is read-only', false, undefined, 'GET, HEAD');
  }
  if (uri === '/v2' || uri === '/v2/') return reply(200, {}, head);
  if (uri.indexOf('/v2/') !== 0) return fail(404, 'UNSUPPORTED', noEndpoint, head);

  rest = uri.slice(4);
  if (badPath(rest)) return fail(400, 'NAME_INVALID', NO_DOTS, head);
  tags = /^(.+)\/tags\/list$/.exec(rest);
  manifest = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  blob = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  match = tags || manifest || blob;
  if (!match) return fail(404, 'UNSUPPORTED', noEndpoint, head);
  name = match[1];
  if (name.length > 255 || !NAME.test(name)) {
    return fail(400, 'NAME_INVALID', 'invalid repository name ' + JSON.stringify(name), head);
  }

  // The request's own problems first, then whether the name is served, as the embedded endpoint does.
  if (tags) {
    n = param(request.querystring, 'n');
    last = param(request.querystring, 'last');
    problem = queryProblem(n, last, head);
    // One tag a page: fewer than n is allowed when a Link header names the next page.
    if (n === undefined && last === undefined) key = 'tags/list';
    else key = last === undefined ? 'tags/page/first' : 'tags/page/after/' + last;
  } else if (manifest) {
    key = manifest[2];
    if (key.indexOf(':') !== -1) problem = digestProblem(key, 'MANIFEST_UNKNOWN', name, head);
    else if (!TAG.test(key)) problem = unknown('MANIFEST_UNKNOWN', name, head);
    key = 'manifests/' + key;
  } else {
    problem = digestProblem(blob[2], 'BLOB_UNKNOWN', name, head);
    key = 'blobs/' + blob[2];
  }
  if (problem) return problem;

  if (SOURCE_IDS.indexOf(name.slice(0, name.indexOf('/'))) === -1) {
    return fail(404, 'NAME_UNKNOWN', 'repository ' + name + ' is not served by this mirror', head, name);
  }
  if (n !== undefined && parseInt(n, 10) === 0) return reply(200, { name: name, tags: [] }, head);
  request.uri = '/registry/' + name + '/' + key;
  return request;
}
