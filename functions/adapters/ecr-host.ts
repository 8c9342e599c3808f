/**
 * Amazon ECR registry hosts: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`. Shared by
 * the credentials adapter and the CDK app (which scopes the pull grant to the same registries),
 * so both accept the same host forms. No SDK import here.
 */
const ECR_HOST = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/;

export function ecrRegistry(host: string): { account: string; region: string } | undefined {
  const match = ECR_HOST.exec(host);
  return match === null ? undefined : { account: match[1]!, region: match[2]! };
}
