#!/usr/bin/env node
// The flowmerge deployment: `npx cdk deploy` (parameters as context, see README "Deploy").
// With -c rawBucketAccount=… a second, small stack is for the raw bucket's own account
// (deploy it with that account's credentials). cdk-nag's AWS Solutions checks run on every
// synth: an unacknowledged finding fails it.
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { FlowmergeStack, propsFromContext } from '../lib/flowmerge-stack.js';
import { RawBucketAccessStack } from '../lib/raw-access-stack.js';

const app = new App();
const props = propsFromContext(app.node);
const suffix = props.stage ? `-${props.stage}` : '';
const account = process.env.CDK_DEFAULT_ACCOUNT;
const region = process.env.CDK_DEFAULT_REGION;
new FlowmergeStack(app, `Flowmerge${suffix}`, {
  ...props,
  env: { account, region },
  description: 'flowmerge: merges small log objects (VPC flow logs, CloudTrail, DNS captures) into partitioned Parquet',
});
if (props.rawBucketAccount && props.rawBucketName) {
  if (!account) throw new Error('rawBucketAccount: the pipeline account must be known (AWS credentials or CDK_DEFAULT_ACCOUNT)');
  new RawBucketAccessStack(app, `FlowmergeRawAccess${suffix}`, {
    env: { account: props.rawBucketAccount, region },
    rawBucketName: props.rawBucketName,
    pipelineAccount: account,
    stage: props.stage,
    sources: props.sources,
    dnsPrefix: props.dnsPrefix,
    deleteMerged: props.deleteMerged,
    rawKmsKeyArn: props.rawKmsKeyArn,
    description: `flowmerge: forwards raw log object events to account ${account} (deploy in the raw bucket's account)`,
  });
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
