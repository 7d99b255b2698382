#!/usr/bin/env node
// The flowmerge deployment: `npx cdk deploy` (parameters as context, see README "Deploy").
// cdk-nag's AWS Solutions checks run on every synth: an unacknowledged finding fails it.
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FlowmergeStack, propsFromContext } from '../lib/flowmerge-stack.js';

const app = new App();
new FlowmergeStack(app, 'Flowmerge', {
  ...propsFromContext(app.node),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  description: 'flowmerge: merges small VPC flow log objects into partitioned Parquet',
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
