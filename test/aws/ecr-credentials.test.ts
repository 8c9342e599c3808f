import { GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { describe, expect, it } from 'vitest';
import { EcrCredentials, ecrRegistry } from '../../functions/adapters/ecr-credentials.ts';
import type { SourceConfig } from '../../shared/core/sources/types.ts';

const source = (registry: string): SourceConfig => ({
  id: 'ecr',
  type: 'ecr',
  registry,
  insecure: false,
  repositories: ['**'],
  rateLimitPerMinute: 60,
});

describe('ECR pull credentials', () => {
  it('recognises ECR hosts only', () => {
    // Act / Assess
    expect(ecrRegistry('123456789012.dkr.ecr.eu-west-1.amazonaws.com')).toEqual({
      account: '123456789012',
      region: 'eu-west-1',
    });
    expect(ecrRegistry('123456789012.dkr.ecr-fips.us-east-1.amazonaws.com')?.region).toBe('us-east-1');
    expect(ecrRegistry('ghcr.io')).toBeUndefined();
    expect(ecrRegistry('123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.io')).toBeUndefined();
  });

  it('decodes the token, caches it until shortly before expiry, and asks the right region', async () => {
    // Prepare
    let now = 1_000_000;
    const calls: { region: string; command: unknown }[] = [];
    const creds = new EcrCredentials({
      now: () => now,
      clientFor: (region) =>
        ({
          send: async (command: unknown) => {
            calls.push({ region, command });
            return {
              authorizationData: [
                {
                  authorizationToken: Buffer.from(`AWS:secret-${calls.length}`).toString('base64'),
                  expiresAt: new Date(now + 12 * 3600_000),
                },
              ],
            };
          },
        }) as never,
    });
    const ecr = source('123456789012.dkr.ecr.eu-west-1.amazonaws.com');
    // Act / Assess
    expect(await creds.forSource(ecr)).toEqual({ username: 'AWS', password: 'secret-1' });
    expect(await creds.forSource(ecr)).toEqual({ username: 'AWS', password: 'secret-1' });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.region).toBe('eu-west-1');
    expect(calls[0]!.command).toBeInstanceOf(GetAuthorizationTokenCommand);
    now += 12 * 3600_000 - 10 * 60_000;
    expect((await creds.forSource(ecr))?.password).toBe('secret-2');
    expect(await creds.forSource(source('ghcr.io'))).toBeUndefined();
  });

  it('turns a failed or empty token into a retryable UNAUTHORIZED', async () => {
    // Prepare
    const failing = new EcrCredentials({
      clientFor: () => ({ send: async () => Promise.reject(new Error('AccessDenied')) }) as never,
    });
    const empty = new EcrCredentials({ clientFor: () => ({ send: async () => ({}) }) as never });
    // Act / Assess
    await expect(
      failing.forSource(source('123456789012.dkr.ecr.us-east-1.amazonaws.com')),
    ).rejects.toMatchObject({
      code: 'UNAUTHORIZED',
      retryable: true,
    });
    await expect(
      empty.forSource(source('123456789012.dkr.ecr.us-east-1.amazonaws.com')),
    ).rejects.toMatchObject({
      code: 'UNAUTHORIZED',
    });
  });
});
