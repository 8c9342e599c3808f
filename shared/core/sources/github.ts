/**
 * GitHub Packages / GHCR: `package` and `registry_package` webhooks for container packages.
 * Proof of origin is `X-Hub-Signature-256: sha256=<hex>`, an HMAC-SHA256 of the raw body bytes;
 * `X-GitHub-Delivery` is the delivery id (the same id comes back on a manual redelivery).
 */
import { DeliveryBuilder, header, hostOf, ignoredDelivery } from './delivery.ts';
import { asObject, malformed, obj, str } from './json.ts';
import type { WebhookSender } from './types.ts';

const ACCEPTED_ACTIONS = new Set(['published', 'updated']);

export const gitHubSender: WebhookSender = {
  auth: { kind: 'body-hmac', header: 'x-hub-signature-256', signature: /^sha256=([0-9a-fA-F]{64})$/ },
  parse({ source, request, body: json }) {
    const deliveryId = header(request, 'x-github-delivery');
    const event = header(request, 'x-github-event') ?? '';
    const body = asObject(json, 'GitHub payload');
    if (event === 'ping') return ignoredDelivery('ping', str(body, 'zen'), deliveryId);
    if (event !== 'package' && event !== 'registry_package') {
      return ignoredDelivery('unsupported-event', event, deliveryId);
    }
    const pkg = obj(body, event);
    if (pkg === undefined) throw malformed(`${event} payload has no '${event}' object`);

    const out = new DeliveryBuilder(source, request);
    const action = str(body, 'action') ?? '';
    const type = (str(pkg, 'package_type') ?? str(pkg, 'ecosystem') ?? '').toLowerCase();
    if (!ACCEPTED_ACTIONS.has(action)) {
      out.ignore('unsupported-action', action);
    } else if (type !== 'container') {
      out.ignore('not-a-container-package', type);
    } else {
      const version = obj(pkg, 'package_version');
      const containerTag = obj(obj(version, 'container_metadata'), 'tag');
      const tag = str(containerTag, 'name') ?? '';
      const digest = str(containerTag, 'digest') || str(version, 'version') || str(version, 'name');
      const fromUrl = referenceParts(str(version, 'package_url'));
      const owner = str(pkg, 'namespace') ?? str(obj(pkg, 'owner'), 'login');
      const name = str(pkg, 'name');
      // GHCR names are lowercase whatever case the owner's login has.
      const repository =
        fromUrl?.repository ?? (owner && name ? `${owner}/${name}`.toLowerCase() : undefined);
      const registryUrl = str(obj(pkg, 'registry'), 'url');
      const host = fromUrl?.host ?? (registryUrl ? hostOf(registryUrl) : undefined);
      if (tag === '') {
        // A multi-arch push sends one event per platform manifest (untagged) and one for the
        // tagged index; mirroring the index is what the tag names.
        out.ignore('untagged', digest);
      } else {
        out.add({ repository, tag, digest, host, eventId: deliveryId });
      }
    }
    return out.build(deliveryId);
  },
};

/** `ghcr.io/acme/basic-auth:1.12.0` → host and lowercase repository; undefined if not of that form. */
function referenceParts(packageUrl: string | undefined): { host: string; repository: string } | undefined {
  if (!packageUrl) return undefined;
  const ref = packageUrl.replace(/^[a-z]+:\/\//i, '');
  const slash = ref.indexOf('/');
  if (slash <= 0) return undefined;
  const host = ref.slice(0, slash);
  let path = ref.slice(slash + 1);
  const at = path.indexOf('@');
  if (at >= 0) path = path.slice(0, at);
  const colon = path.lastIndexOf(':');
  if (colon >= 0) path = path.slice(0, colon);
  return path === '' ? undefined : { host, repository: path.toLowerCase() };
}
