/**
 * Logical IDs deployed stacks already hold. A changed ID makes CloudFormation replace the
 * resource: a new queue without the queued messages, a new log group without its history, a new
 * API URL every registry would have to be given again. Functions, roles, policies, rules and
 * alarms are stateless and free to move.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { synthApp, writeConfig } from './helpers.ts';

const PIPELINE_IDS: Record<string, string> = {
  MirrorDeadLettersF30BD67E: 'AWS::SQS::Queue',
  MirrorDeadLettersPolicy91A0B692: 'AWS::SQS::QueuePolicy',
  MirrorQueue88F9F423: 'AWS::SQS::Queue',
  MirrorQueuePolicy8959AA1E: 'AWS::SQS::QueuePolicy',
  PublishDeadLettersCD4087F7: 'AWS::SQS::Queue',
  PublishDeadLettersPolicy050E6744: 'AWS::SQS::QueuePolicy',
  PublishQueue2CCF7BE3: 'AWS::SQS::Queue',
  PublishQueuePolicyCDC11A0B: 'AWS::SQS::QueuePolicy',
  WebhookLogsAA703ADA: 'AWS::Logs::LogGroup',
  MirrorLogs4F59672F: 'AWS::Logs::LogGroup',
  PublishLogs921C90B3: 'AWS::Logs::LogGroup',
  KeysLogs7981C88C: 'AWS::Logs::LogGroup',
  WebhookApiAccessLogs52B66C6B: 'AWS::Logs::LogGroup',
  WebhookApi28122C53: 'AWS::ApiGatewayV2::Api',
  WebhookApiStageA0F7F44D: 'AWS::ApiGatewayV2::Stage',
  WebhookApiPOSThookssourceId998C1499: 'AWS::ApiGatewayV2::Route',
  WebhookApiPOSThookssourceIdtoken9B6AB771: 'AWS::ApiGatewayV2::Route',
};

/** Every storage resource is retained; these are the ones the example config creates. */
const STORAGE_IDS: Record<string, string> = {
  AccessLogs8B620ECA: 'AWS::S3::Bucket',
  AccessLogsPolicyABDC4D2D: 'AWS::S3::BucketPolicy',
  MirrorBucket7E85C27F: 'AWS::S3::Bucket',
  MirrorBucketPolicy77362EC2: 'AWS::S3::BucketPolicy',
  PublisherRoleFDE2F285: 'AWS::IAM::Role',
  SigningKeyEEFC2790: 'AWS::KMS::Key',
  SigningKeyAlias713722FF: 'AWS::KMS::Alias',
  ImmutableCache37F99B31: 'AWS::CloudFront::CachePolicy',
  LatestManifestCache8BC87F42: 'AWS::CloudFront::CachePolicy',
  ModuleCache3E8E3B26: 'AWS::CloudFront::CachePolicy',
  KeysCache7A889608: 'AWS::CloudFront::CachePolicy',
  NotFound0C26DB15: 'AWS::CloudFront::Function',
  MirrorCdnOrigin1S3OriginAccessControl25DCD5F4: 'AWS::CloudFront::OriginAccessControl',
  MirrorCdn896494D2: 'AWS::CloudFront::Distribution',
  WebhookGHCRWEBHOOKSECRETCE63D226: 'AWS::SecretsManager::Secret',
  WebhookHARBORWEBHOOKSECRET5A6F2A58: 'AWS::SecretsManager::Secret',
  CredentialHARBORPULLPASSWORDE07275E4: 'AWS::SecretsManager::Secret',
  CredentialHARBORPULLUSER435720C5: 'AWS::SecretsManager::Secret',
};

const typesById = (t: Template) =>
  Object.fromEntries(
    Object.entries(t.toJSON().Resources as Record<string, { Type: string }>).map(([id, r]) => [id, r.Type]),
  );

describe('logical IDs of stateful resources', () => {
  it('keeps the pipeline queues, their policies, log groups and the webhook API where they are', () => {
    const { pipeline } = synthApp();
    expect(typesById(Template.fromStack(pipeline))).toMatchObject(PIPELINE_IDS);
  });

  it('keeps them for any mirror name and config, as they do not depend on either', () => {
    // Prepare
    const path = writeConfig(
      'mirror: { name: other }\nsources:\n  - { id: hub, type: dockerhub, registry: "docker.io", repositories: ["acme/filter"], webhookSecretEnv: HOOK }\n',
    );
    // Act
    const { pipeline } = synthApp({ config: path, reserveConcurrency: 'false' });
    // Assess
    expect(typesById(Template.fromStack(pipeline))).toMatchObject(PIPELINE_IDS);
  });

  it('keeps every storage resource where it is', () => {
    const { storage } = synthApp();
    expect(typesById(Template.fromStack(storage))).toMatchObject(STORAGE_IDS);
  });
});
