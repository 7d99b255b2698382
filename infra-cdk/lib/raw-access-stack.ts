// What a raw bucket in another account (a log-archive account, as AWS Control Tower lays it out)
// needs for flowmerge, deployed with that account's credentials: its object events on
// EventBridge, a rule forwarding the enabled sources' "Object Created" events to the pipeline
// account's default event bus, and — printed as outputs, to merge into the policies that bucket
// and key already have (this stack never replaces them) — the bucket-policy and key-policy
// statements that let the pipeline's merger read (and, with deleteMerged, delete) those objects.
import { Aws, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventTargets from 'aws-cdk-lib/aws-events-targets';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledge, mergerRoleName, rawObjectPattern, SOURCES, type SourceName, sourcePatterns } from './flowmerge-stack.js';

export interface RawBucketAccessProps extends StackProps {
  readonly rawBucketName: string;
  /** The account the pipeline (FlowmergeStack) is deployed in. */
  readonly pipelineAccount: string;
  readonly stage?: string;
  readonly sources?: SourceName[];
  readonly dnsPrefix?: string;
  readonly deleteMerged?: boolean;
  readonly rawKmsKeyArn?: string;
}

/** The bucket-policy statement that lets the merger read (and delete, if asked) the sources' keys. */
export function rawBucketPolicyStatement(o: {
  bucketName: string;
  mergerRoleArn: string;
  patterns: string[];
  deleteMerged: boolean;
  partition: string;
}): Record<string, unknown> {
  return {
    Sid: 'FlowmergeMergerReadsRawLogs',
    Effect: 'Allow',
    Principal: { AWS: o.mergerRoleArn },
    Action: o.deleteMerged ? ['s3:GetObject', 's3:DeleteObject'] : ['s3:GetObject'],
    Resource: o.patterns.map((p) => `arn:${o.partition}:s3:::${o.bucketName}/${p}`),
  };
}

/** The key-policy statement that lets the merger decrypt the raw objects, through S3 only. */
export function rawKeyPolicyStatement(o: { mergerRoleArn: string; region: string }): Record<string, unknown> {
  return {
    Sid: 'FlowmergeMergerDecryptsRawLogs',
    Effect: 'Allow',
    Principal: { AWS: o.mergerRoleArn },
    Action: 'kms:Decrypt',
    Resource: '*',
    Condition: { StringEquals: { 'kms:ViaService': `s3.${o.region}.amazonaws.com` } },
  };
}

export class RawBucketAccessStack extends Stack {
  constructor(scope: Construct, id: string, props: RawBucketAccessProps) {
    super(scope, id, props);
    const patterns = (props.sources ?? [...SOURCES]).flatMap((s) => sourcePatterns(s, props.dnsPrefix ?? 'dns/'));
    const bucket = s3.Bucket.fromBucketName(this, 'RawBucket', props.rawBucketName);
    bucket.enableEventBridgeNotification();
    const pipelineBus = events.EventBus.fromEventBusArn(
      this,
      'PipelineBus',
      `arn:${Aws.PARTITION}:events:${this.region}:${props.pipelineAccount}:event-bus/default`,
    );
    new events.Rule(this, 'ForwardRawObjectCreated', {
      description: `flowmerge: created raw objects of ${patterns.join(', ')} to account ${props.pipelineAccount}`,
      eventPattern: rawObjectPattern(props.rawBucketName, patterns),
      targets: [new eventTargets.EventBus(pipelineBus)],
    });
    const mergerRoleArn = `arn:${Aws.PARTITION}:iam::${props.pipelineAccount}:role/${mergerRoleName(props.stage)}`;
    new CfnOutput(this, 'BucketPolicyStatement', {
      description: `Add to the bucket policy of ${props.rawBucketName}`,
      value: this.toJsonString(
        rawBucketPolicyStatement({
          bucketName: props.rawBucketName,
          mergerRoleArn,
          patterns,
          deleteMerged: props.deleteMerged ?? false,
          partition: Aws.PARTITION,
        }),
      ),
    });
    if (props.rawKmsKeyArn) {
      new CfnOutput(this, 'KeyPolicyStatement', {
        description: `Add to the key policy of ${props.rawKmsKeyArn}`,
        value: this.toJsonString(rawKeyPolicyStatement({ mergerRoleArn, region: this.region })),
      });
    }
    const notifications = this.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
    if (notifications) {
      acknowledge(
        notifications,
        'AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        "CDK's own handler that turns on the bucket's EventBridge notifications uses the basic Lambda logging policy; it runs only on deploy.",
      );
      acknowledge(
        notifications,
        'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
        "CDK's own notifications handler may change the notification configuration of the imported bucket (s3:PutBucketNotification on *); it runs only on deploy.",
      );
    }
  }
}
