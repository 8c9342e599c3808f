// The registry API's viewer-response function (CloudFront Functions, cloudfront-js-1.0: ES5.1 only).
// Turns the user metadata the publisher puts on registry/ objects (registryMetadata in
// shared/core/storage-keys.ts) into the registry's headers, and shows clients none of S3's own.
var COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
var NAME = '(' + COMPONENT + '(?:/' + COMPONENT + ')+)';
// The viewer's path, or the one the viewer-request function rewrote it to.
var TAGS_URI = new RegExp('^/v2/' + NAME + '/tags/list$');
var PAGE_URI = new RegExp('^/registry/' + NAME + '/tags/page/(?:first|after/[^/]+)$');
var TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

// biome-ignore lint/correctness/noUnusedVariables: CloudFront calls it
function handler(event) {
  var request = event.request || {};
  var response = event.response;
  var headers = response.headers;
  var digest = headers['x-amz-meta-docker-content-digest'];
  var nextLast = headers['x-amz-meta-next-last'];
  var internal = [];
  var header, i, uri, named, query, n, page, link;
  for (header in headers) {
    if (header.indexOf('x-amz-meta-') === 0 || header === 'x-amz-version-id') internal.push(header);
    else if (header === 'x-amz-server-side-encryption') internal.push(header);
  }
  for (i = 0; i < internal.length; i++) delete headers[internal[i]];

  headers['docker-distribution-api-version'] = { value: 'registry/2.0' };
  if (digest && typeof digest.value === 'string') headers['docker-content-digest'] = { value: digest.value };
  if (nextLast === undefined || !TAG.test(nextLast.value)) return response;

  uri = typeof request.uri === 'string' ? request.uri : '';
  named = TAGS_URI.exec(uri) || PAGE_URI.exec(uri);
  if (!named || named[1].length > 255) return response;
  query = request.querystring || {};
  // biome-ignore lint/suspicious/noPrototypeBuiltins: Object.hasOwn is not in ES5.1
  n = Object.prototype.hasOwnProperty.call(query, 'n') && query.n ? query.n.value : undefined;
  page = typeof n === 'string' && /^\d{1,9}$/.test(n) ? 'n=' + n + '&' : '';
  link = '</v2/' + named[1] + '/tags/list?' + page + 'last=' + nextLast.value + '>; rel="next"';
  headers.link = { value: link };
  return response;
}
