import { CfnElement } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Holds a resource at the CloudFormation logical ID it already has in deployed stacks. The ID
 * follows the construct path, so moving a stateful resource into a construct would otherwise
 * replace it on the next deploy (a new queue without its messages, a new log group without its
 * history, a new API URL). test/infra/logical-ids.test.ts lists every ID held this way.
 */
export function keepLogicalId(scope: IConstruct, logicalId: string): void {
  const resource = scope instanceof CfnElement ? scope : scope.node.defaultChild;
  if (!(resource instanceof CfnElement)) {
    throw new Error(`${scope.node.path} has no CloudFormation resource to keep at ${logicalId}`);
  }
  resource.overrideLogicalId(logicalId);
}
