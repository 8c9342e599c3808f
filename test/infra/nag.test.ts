/**
 * cdk-nag's AWS Solutions pack over the whole app: zero findings left, and every
 * acknowledgement carries a reason.
 */
import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { synthApp } from './helpers.ts';

describe('cdk-nag AwsSolutions', () => {
  it('reports no unacknowledged findings', () => {
    // Prepare
    const { app } = synthApp();
    // Act
    const report = new AwsSolutionsChecks().validateScope(app);
    const findings = report.violations.flatMap((v) =>
      v.violatingResources.map((r) => `${v.ruleName} ${r.resourceLogicalId} ${r.templatePath}`),
    );
    // Assess
    expect(findings).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('has a reason on every acknowledgement', () => {
    // Prepare
    const { app } = synthApp();
    // Act
    const acks = app.node
      .findAll()
      .flatMap((c) => c.node.metadata.filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY))
      // Recorded as { "<prefix>::<rule id>": "<reason>" }.
      .flatMap((m) => Object.entries(m.data as Record<string, string>));
    // Assess
    expect(acks.length).toBeGreaterThan(5);
    for (const [id, reason] of acks) expect(reason.length, id).toBeGreaterThan(30);
  });
});
