// The flowmerge deployment (docs/contracts.md §1): raw bucket → S3 notification → raw queue → mapper
// (Fargate) → merge queue → merger (Fargate) → Parquet in the output bucket, with the ledger in
// DynamoDB, both services scaled from zero on their queue's backlog, traces through an ADOT
// sidecar to X-Ray, alarms on dead letters and message age, and the Glue/Athena table that
// `flowmerge ddl` describes.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CfnElement, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventTargets from 'aws-cdk-lib/aws-events-targets';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as applicationautoscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as athena from 'aws-cdk-lib/aws-athena';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct, Node } from 'constructs';
import vpcflowTable from './vpcflow-table.json' with { type: 'json' };
import cloudtrailTable from './cloudtrail-table.json' with { type: 'json' };
import dnsTable from './dns-table.json' with { type: 'json' };
import cloudtrailMonthlyTable from './cloudtrail-monthly-table.json' with { type: 'json' };
import { rawBucketPolicyStatement, rawKeyPolicyStatement } from './raw-access-stack.js';

/** A table as `flowmerge ddl --format json` prints it. */
export interface TableJson {
  readonly name: string;
  readonly dataset: string;
  readonly columns: { name: string; type: string }[];
  readonly partitionKeys: { name: string; type: string }[];
  readonly parameters: Record<string, string>;
}

/** The Glue tables, one per source, as `flowmerge ddl --source S --format json` prints them. */
export const TABLES: TableJson[] = [vpcflowTable, cloudtrailTable, dnsTable];
/** CloudTrail's monthly table (`flowmerge ddl --source cloudtrail --monthly --format json`). */
export const MONTHLY_TABLE: TableJson = cloudtrailMonthlyTable;
/** The message the hourly schedule sends to the rollup queue: the merger queues a job per due partition. */
export const ROLLUP_SCAN = '{"kind":"scan"}';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root: the Docker build context of both images. */
export const REPO_ROOT = path.resolve(here, '../..');

/** How long a received message stays invisible; the workers extend it every third of it. */
export const VISIBILITY_TIMEOUT = Duration.minutes(5);
/** Deliveries before a message moves to its DLQ (as `flowmerge aws bootstrap`). */
export const MAX_RECEIVE_COUNT = 5;
/** The attribute the workers write for DynamoDB's TTL. */
export const TTL_ATTRIBUTE = 'expires_at';
/** The stop timeout: the merger's drain (20 s) plus margin; Fargate allows up to 120 s. */
export const STOP_TIMEOUT = Duration.seconds(30);

/** The sources flowmerge carries. */
export const SOURCES = ['vpcflow', 'cloudtrail', 'dns'] as const;
export type SourceName = (typeof SOURCES)[number];

/**
 * The raw-object key patterns of a source (EventBridge `wildcard` and IAM resource syntax alike:
 * `*` spans slashes). AWS delivers flow logs and trails under `[prefix/]AWSLogs/[o-org/]<account>/
 * {vpcflowlogs,CloudTrail}/`; `CloudTrail/` excludes `CloudTrail-Digest/` and `CloudTrail-Insight/`.
 */
export function sourcePatterns(source: SourceName, dnsPrefix: string): string[] {
  switch (source) {
    case 'vpcflow':
      return ['*AWSLogs/*/vpcflowlogs/*'];
    case 'cloudtrail':
      return ['*AWSLogs/*/CloudTrail/*'];
    case 'dns':
      return [`${dnsPrefix.replace(/^\/+/, '')}*`];
  }
}

export interface FlowmergeStackProps extends StackProps {
  /** Import this existing (e.g. organisation-wide flow log) bucket instead of creating one. */
  readonly rawBucketName?: string;
  /** The account the imported raw bucket is in, when it is not the stack's (a log-archive account). */
  readonly rawBucketAccount?: string;
  /** The KMS key the raw objects are encrypted with (SSE-KMS): the merger may decrypt with it. */
  readonly rawKmsKeyArn?: string;
  /** A customer-managed key for the output bucket, queues, table, topic and logs; `create` makes one. */
  readonly kmsKeyArn?: string;
  /** The sources whose objects are routed to the pipeline (default: all). */
  readonly sources?: SourceName[];
  /** The key prefix DNS captures land under (`<prefix><server>/…`). */
  readonly dnsPrefix?: string;
  /** Tasks in private subnets without public IPs, with the VPC endpoints the workers need. */
  readonly privateSubnets?: boolean;
  /** An existing VPC (with `vpcSubnetIds` and `vpcAzs`) instead of a created one. */
  readonly vpcId?: string;
  readonly vpcSubnetIds?: string[];
  readonly vpcAzs?: string[];
  /** An SNS topic for the alarms (default: a created one). */
  readonly alarmTopicArn?: string;
  /** Prefixes every named resource, so stages coexist in one account and region. */
  readonly stage?: string;
  /** Tasks kept running when idle (0: scale to zero). */
  readonly minMappers?: number;
  readonly minMergers?: number;
  /** Key prefix of the Parquet output in the output bucket. */
  readonly outputPrefix: string;
  /** Expire raw objects after this many days (created raw bucket only; 0 = keep). */
  readonly rawExpireDays: number;
  /** Move raw objects to S3 Glacier Flexible Retrieval after this many days (created raw bucket only; 0 = never). */
  readonly rawArchiveDays?: number;
  /** The merger deletes each raw object once its batch is committed (FLOWMERGE_DELETE_MERGED). */
  readonly deleteMerged?: boolean;
  /** Hourly rollups of closed partitions (the schedule, the rollup queue, the merger's rollup jobs). */
  readonly rollup?: boolean;
  /** Flow logs: the window rows merge in when rolled up (e.g. `1h`); unset: their batch window. */
  readonly rollupMergeWindow?: string;
  /** Prefix in the output bucket of CloudTrail's monthly table; empty: no monthly aggregation. */
  readonly monthlyPrefix?: string;
  /** Graviton (ARM64) tasks and images; false for x86_64. */
  readonly arm64: boolean;
  /** An ADOT collector sidecar sends traces to X-Ray (and metrics to CloudWatch). */
  readonly tracing: boolean;
  readonly maxMappers: number;
  readonly maxMergers: number;
}

/** Stack parameters from CDK context (`-c key=value` or cdk.json). */
export function propsFromContext(node: Node): FlowmergeStackProps {
  const get = (k: string) => node.tryGetContext(k);
  const bool = (v: unknown, d: boolean) => (v === undefined ? d : v === true || v === 'true');
  const num = (v: unknown, d: number) => (v === undefined || v === '' ? d : Number(v));
  const list = (v: unknown) =>
    v === undefined || v === ''
      ? undefined
      : (Array.isArray(v) ? v.map(String) : String(v).split(',')).map((x) => x.trim()).filter(Boolean);
  return {
    rawBucketName: get('rawBucketName') || undefined,
    outputPrefix: String(get('outputPrefix') ?? 'flows').replace(/^\/+|\/+$/g, ''),
    rawExpireDays: num(get('rawExpireDays'), 0),
    rawArchiveDays: num(get('rawArchiveDays'), 0),
    deleteMerged: bool(get('deleteMerged'), false),
    rollup: bool(get('rollup'), true),
    rollupMergeWindow: get('rollupMergeWindow') || undefined,
    monthlyPrefix: String(get('monthlyPrefix') ?? 'archive').replace(/^\/+|\/+$/g, ''),
    rawBucketAccount: get('rawBucketAccount') || undefined,
    rawKmsKeyArn: get('rawKmsKeyArn') || undefined,
    kmsKeyArn: get('kmsKeyArn') || undefined,
    sources: list(get('sources')) as SourceName[] | undefined,
    dnsPrefix: get('dnsPrefix') ?? 'dns/',
    privateSubnets: bool(get('privateSubnets'), false),
    vpcId: get('vpcId') || undefined,
    vpcSubnetIds: list(get('vpcSubnetIds')),
    vpcAzs: list(get('vpcAzs')),
    alarmTopicArn: get('alarmTopicArn') || undefined,
    stage: get('stage') || undefined,
    minMappers: num(get('minMappers'), 0),
    minMergers: num(get('minMergers'), 0),
    arm64: bool(get('arm64'), true),
    tracing: bool(get('tracing'), true),
    maxMappers: num(get('maxMappers'), 2),
    maxMergers: num(get('maxMergers'), 8),
  };
}

/** Acknowledges a cdk-nag finding on a construct, with the reason it is acceptable. */
export function acknowledge(scope: Construct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id, reason });
}

/** Environment variables the Rust configuration reads that the stack leaves unset (defaults). */
export const OPTIONAL_UNSET = ['FLOWMERGE_FORMAT', 'FLOWMERGE_ROLLUP_MERGE_WINDOW', 'FLOWMERGE_MAX_OBJECT_SIZE'];

/** The merger task's memory, and the share of it merges may use (the rest: the process, the
 * collector sidecar, the page cache spills go through). */
export const MERGER_MEMORY_MIB = 4096;
export const MERGER_MEMORY_LIMIT = `${Math.floor(MERGER_MEMORY_MIB * 0.6)}MiB`;
/** The merger image's spill volume (docker/merger.Dockerfile), on the task's ephemeral storage. */
export const SPILL_DIR = '/var/spool/flowmerge';

/** The name prefix of a stage's named resources (`flowmerge`, or `flowmerge-<stage>`). */
export function namePrefix(stage?: string): string {
  return stage ? `flowmerge-${stage}` : 'flowmerge';
}

/** The merger's task role name when it must be known outside the stack (a raw bucket elsewhere). */
export function mergerRoleName(stage?: string): string {
  return `${namePrefix(stage)}-merger-task`;
}

/** The EventBridge pattern of created raw objects of the enabled sources (in `account`, if given). */
export function rawObjectPattern(bucketName: string, patterns: string[], account?: string): events.EventPattern {
  return {
    source: ['aws.s3'],
    detailType: ['Object Created'],
    ...(account ? { account: [account] } : {}),
    detail: {
      bucket: { name: [bucketName] },
      object: { key: events.Match.anyOf(...patterns.map((p) => events.Match.wildcard(p))) },
    },
  };
}

/** Checks option combinations that cannot work, before anything is built. */
export function checkProps(props: FlowmergeStackProps): void {
  for (const s of props.sources ?? []) {
    if (!(SOURCES as readonly string[]).includes(s)) throw new Error(`sources: unknown source ${s} (one of ${SOURCES.join(', ')})`);
  }
  if (props.sources && props.sources.length === 0) throw new Error('sources: enable at least one source');
  if (props.rawBucketAccount && !props.rawBucketName) {
    throw new Error('rawBucketAccount needs rawBucketName (the bucket in that account)');
  }
  if (props.rawBucketAccount && !/^\d{12}$/.test(props.rawBucketAccount)) {
    throw new Error(`rawBucketAccount ${props.rawBucketAccount}: not a 12-digit account id`);
  }
  if (props.stage && !/^[a-z][a-z0-9-]{0,19}$/.test(props.stage)) {
    throw new Error(`stage ${props.stage}: lowercase letters, digits and -, at most 20, starting with a letter`);
  }
  if (props.vpcId) {
    const n = props.vpcSubnetIds?.length ?? 0;
    if (n === 0 || n !== (props.vpcAzs?.length ?? 0)) {
      throw new Error('vpcId needs vpcSubnetIds and vpcAzs, as many of each (the subnets the tasks run in, and their zones)');
    }
  }
  if ((props.minMappers ?? 0) > props.maxMappers || (props.minMergers ?? 0) > props.maxMergers) {
    throw new Error('minMappers/minMergers must not exceed maxMappers/maxMergers');
  }
}

export class FlowmergeStack extends Stack {
  readonly rawQueue: sqs.Queue;
  readonly mergeQueue: sqs.Queue;
  readonly rollupQueue?: sqs.Queue;
  readonly ledger: dynamodb.TableV2;
  readonly outputBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: FlowmergeStackProps) {
    super(scope, id, props);
    checkProps(props);
    const prefix = props.outputPrefix;
    const stage = props.stage;
    const names = namePrefix(stage);
    const named = (suffix: string) => (stage ? `${names}-${suffix}` : undefined);
    const sources = props.sources ?? [...SOURCES];
    const dnsPrefix = props.dnsPrefix ?? 'dns/';
    const rawPatterns = sources.flatMap((src) => sourcePatterns(src, dnsPrefix));
    const crossAccount = props.rawBucketAccount !== undefined;

    // ---- Encryption: AWS-managed by default, or one customer-managed key -------------------
    const key: kms.IKey | undefined =
      props.kmsKeyArn === 'create'
        ? new kms.Key(this, 'Key', {
            description: `flowmerge${stage ? ` (${stage})` : ''}: output, queues, ledger, alarms topic and logs`,
            enableKeyRotation: true,
            removalPolicy: RemovalPolicy.RETAIN,
          })
        : props.kmsKeyArn
          ? kms.Key.fromKeyArn(this, 'Key', props.kmsKeyArn)
          : undefined;
    if (key instanceof kms.Key) {
      // The services that write with the key on the stack's behalf.
      key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'CloudWatchLogs',
          principals: [new iam.ServicePrincipal(`logs.${this.region}.amazonaws.com`)],
          actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
          resources: ['*'],
          conditions: { ArnLike: { 'kms:EncryptionContext:aws:logs:arn': `arn:${this.partition}:logs:${this.region}:${this.account}:*` } },
        }),
      );
      key.addToResourcePolicy(
        new iam.PolicyStatement({
          sid: 'EventBridgeAndAlarmsToQueuesAndTopic',
          principals: [new iam.ServicePrincipal('events.amazonaws.com'), new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: ['*'],
        }),
      );
    }
    const workPrefix = prefix ? `${prefix}/_flowmerge` : '_flowmerge';
    const datasetPrefixes = TABLES.map((t) => (prefix ? `${prefix}/${t.dataset}` : t.dataset));

    // ---- Storage -------------------------------------------------------------------------
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    acknowledge(accessLogs, 'AwsSolutions-S1', 'This is the server access log bucket; logging it to itself would loop.');

    const rawBucket: s3.IBucket = props.rawBucketName
      ? s3.Bucket.fromBucketName(this, 'RawBucket', props.rawBucketName)
      : new s3.Bucket(this, 'RawBucket', {
          encryption: s3.BucketEncryption.S3_MANAGED,
          blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
          enforceSSL: true,
          eventBridgeEnabled: true,
          serverAccessLogsBucket: accessLogs,
          serverAccessLogsPrefix: 'raw/',
          lifecycleRules: rawLifecycle(props),
          removalPolicy: RemovalPolicy.RETAIN,
        });

    // Versioned: a rollup's deletes (and any mistake) stay recoverable for a week.
    this.outputBucket = new s3.Bucket(this, 'OutputBucket', {
      ...(key ? { encryption: s3.BucketEncryption.KMS, encryptionKey: key, bucketKeyEnabled: true } : { encryption: s3.BucketEncryption.S3_MANAGED }),
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: true,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'output/',
      lifecycleRules: [
        { id: 'athena-results', prefix: 'athena-results/', expiration: Duration.days(30) },
        { id: 'noncurrent-versions', noncurrentVersionExpiration: Duration.days(7), expiredObjectDeleteMarker: true },
        // A merger killed during a multipart upload leaves its parts unseen; they are billed
        // until aborted. The batch's retry uploads the file again.
        { id: 'incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const output = this.outputBucket;

    // ---- Queues --------------------------------------------------------------------------
    const encryption = key
      ? { encryption: sqs.QueueEncryption.KMS, encryptionMasterKey: key }
      : { encryption: sqs.QueueEncryption.SQS_MANAGED };
    const queue = (name: string) => {
      const dlq = new sqs.Queue(this, `${name}Dlq`, {
        ...encryption,
        queueName: named(`${name.toLowerCase()}-dlq`),
        enforceSSL: true,
        retentionPeriod: Duration.days(14),
      });
      acknowledge(dlq, 'AwsSolutions-SQS3', 'This is a dead-letter queue; it has no DLQ of its own.');
      const q = new sqs.Queue(this, `${name}Queue`, {
        ...encryption,
        queueName: named(name.toLowerCase()),
        enforceSSL: true,
        visibilityTimeout: VISIBILITY_TIMEOUT,
        retentionPeriod: Duration.days(14),
        deadLetterQueue: { queue: dlq, maxReceiveCount: MAX_RECEIVE_COUNT },
      });
      return { q, dlq };
    };
    const raw = queue('Raw');
    const merge = queue('Merge');
    const rollup = props.rollup === false ? undefined : queue('Rollup');
    this.rawQueue = raw.q;
    this.mergeQueue = merge.q;
    this.rollupQueue = rollup?.q;
    const monthlyPrefix = props.monthlyPrefix ?? 'archive';
    // ---- Routing: only the enabled sources' objects reach the raw queue ------------------------
    // S3 → EventBridge ("Object Created") → a rule matching the sources' key patterns → the raw
    // queue. Objects of other log types in a shared bucket are never fetched. A bucket in another
    // account forwards its events to this account's default bus (RawBucketAccessStack).
    if (!crossAccount && props.rawBucketName) rawBucket.enableEventBridgeNotification();
    new events.Rule(this, 'RawObjectCreated', {
      ruleName: named('raw-object-created'),
      description: `flowmerge: created objects of ${sources.join(', ')} to the raw queue`,
      eventPattern: rawObjectPattern(rawBucket.bucketName, rawPatterns, props.rawBucketAccount),
      targets: [new eventTargets.SqsQueue(raw.q)],
    });
    if (crossAccount) {
      new events.CfnEventBusPolicy(this, 'RawAccountMayPutEvents', {
        eventBusName: 'default',
        statementId: `${names}-from-${props.rawBucketAccount}`,
        statement: {
          Sid: `${names}-from-${props.rawBucketAccount}`,
          Effect: 'Allow',
          Principal: { AWS: `arn:${this.partition}:iam::${props.rawBucketAccount}:root` },
          Action: 'events:PutEvents',
          Resource: `arn:${this.partition}:events:${this.region}:${this.account}:event-bus/default`,
        },
      });
    }

    // ---- Ledger --------------------------------------------------------------------------
    this.ledger = new dynamodb.TableV2(this, 'Ledger', {
      tableName: named('ledger'),
      ...(key ? { encryption: dynamodb.TableEncryptionV2.customerManagedKey(key) } : {}),
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      timeToLiveAttribute: TTL_ATTRIBUTE,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- Network and cluster ---------------------------------------------------------------
    // Default: public subnets and gateway endpoints, no NAT gateway to pay for; tasks take no
    // inbound traffic. privateSubnets: isolated subnets, no public IPs, and interface endpoints
    // for everything the tasks reach besides S3 and DynamoDB. vpcId: the tasks go into the given
    // subnets, which must reach those services (NAT or endpoints) on their own.
    const isolated = props.privateSubnets === true;
    let vpc: ec2.IVpc;
    let subnets: ec2.SubnetSelection;
    if (props.vpcId) {
      vpc = ec2.Vpc.fromVpcAttributes(this, 'Vpc', {
        vpcId: props.vpcId,
        availabilityZones: props.vpcAzs ?? [],
        privateSubnetIds: props.vpcSubnetIds ?? [],
      });
      subnets = { subnets: vpc.privateSubnets };
    } else {
      const vpcFlowLogs = new logs.LogGroup(this, 'VpcFlowLogs', {
        retention: logs.RetentionDays.ONE_MONTH,
        encryptionKey: key,
      });
      const subnetType = isolated ? ec2.SubnetType.PRIVATE_ISOLATED : ec2.SubnetType.PUBLIC;
      const created = new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: isolated ? 'private' : 'public', subnetType }],
        gatewayEndpoints: {
          S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
          DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
        },
        flowLogs: {
          rejected: {
            destination: ec2.FlowLogDestination.toCloudWatchLogs(vpcFlowLogs),
            trafficType: ec2.FlowLogTrafficType.REJECT,
          },
        },
      });
      if (isolated) {
        for (const [id, service] of interfaceEndpoints(props.tracing)) {
          const endpoint = created.addInterfaceEndpoint(id, { service, subnets: { subnetType }, privateDnsEnabled: true });
          acknowledge(
            endpoint,
            'AwsSolutions-EC23',
            "The endpoint's security group admits HTTPS from the VPC's own CIDR only (CDK's default for interface endpoints); cdk-nag cannot read the CIDR, a token.",
          );
        }
      }
      vpc = created;
      subnets = { subnetType };
    }
    const publicIp = !props.vpcId && !isolated;
    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    // ---- Services ----------------------------------------------------------------------------
    const common: Record<string, string> = {
      FLOWMERGE_MERGE_QUEUE_URL: merge.q.queueUrl,
      FLOWMERGE_TABLE: this.ledger.tableName,
      FLOWMERGE_OUTPUT: `s3://${output.bucketName}/${prefix}`,
      FLOWMERGE_WORK: `s3://${output.bucketName}/${workPrefix}`,
      FLOWMERGE_VISIBILITY_TIMEOUT: `${VISIBILITY_TIMEOUT.toSeconds()}s`,
      FLOWMERGE_LEDGER_TTL: '30d',
      FLOWMERGE_LOG: 'info',
    };
    const mapperEnv: Record<string, string> = {
      ...common,
      FLOWMERGE_RAW_QUEUE_URL: raw.q.queueUrl,
      FLOWMERGE_WINDOW: '5m',
      FLOWMERGE_BATCH_MAX_WAIT: '60s',
      FLOWMERGE_BATCH_MAX_OBJECTS: '1000',
      FLOWMERGE_BATCH_MAX_BYTES: '512MiB',
      FLOWMERGE_CLAIM_LEASE: '2m',
    };
    const mergerEnv: Record<string, string> = {
      ...common,
      FLOWMERGE_MERGER_CONCURRENCY: '1',
      FLOWMERGE_FETCH_CONCURRENCY: '16',
      FLOWMERGE_DRAIN_TIMEOUT: '20s',
      FLOWMERGE_DNS_PORTS: '53',
      FLOWMERGE_DNS_TIMEOUT: '2s',
      FLOWMERGE_DNS_SERVER_FOLDER: 'dns',
      FLOWMERGE_DELETE_MERGED: props.deleteMerged ? 'true' : 'false',
      FLOWMERGE_MEMORY_LIMIT: MERGER_MEMORY_LIMIT,
      FLOWMERGE_SPILL_DIR: SPILL_DIR,
    };
    if (rollup) {
      mergerEnv.FLOWMERGE_ROLLUP_QUEUE_URL = rollup.q.queueUrl;
      mergerEnv.FLOWMERGE_ROLLUP_MIN_AGE = '1h';
      mergerEnv.FLOWMERGE_ROLLUP_LEASE = '15m';
      mergerEnv.FLOWMERGE_ROLLUP_TARGET_SIZE = '512MiB';
      if (props.rollupMergeWindow) mergerEnv.FLOWMERGE_ROLLUP_MERGE_WINDOW = props.rollupMergeWindow;
      if (monthlyPrefix) mergerEnv.FLOWMERGE_ROLLUP_MONTHLY = `s3://${output.bucketName}/${monthlyPrefix}`;
    }

    const mapper = this.service('Mapper', {
      cluster,
      dockerfile: 'docker/mapper.Dockerfile',
      cpu: 256,
      memoryMiB: 512,
      environment: mapperEnv,
      queues: [raw.q],
      minTasks: props.minMappers ?? 0,
      maxTasks: props.maxMappers,
      placement: { subnets, publicIp },
      key,
      props,
    });
    const merger = this.service('Merger', {
      cluster,
      dockerfile: 'docker/merger.Dockerfile',
      cpu: 2048,
      memoryMiB: MERGER_MEMORY_MIB,
      scratch: SPILL_DIR,
      environment: mergerEnv,
      // Rollup jobs wake the mergers too: a scan arrives hourly, when they may be at zero.
      queues: rollup ? [merge.q, rollup.q] : [merge.q],
      minTasks: props.minMergers ?? 0,
      maxTasks: props.maxMergers,
      placement: { subnets, publicIp },
      key,
      roleName: crossAccount ? mergerRoleName(stage) : named('merger-task'),
      props,
    });
    if (key) {
      for (const svc of [mapper, merger]) key.grantEncryptDecrypt(svc.taskRole);
    }

    // ---- Least privilege ---------------------------------------------------------------------
    raw.q.grantConsumeMessages(mapper.taskRole);
    merge.q.grantSendMessages(mapper.taskRole);
    merge.q.grantConsumeMessages(merger.taskRole);
    if (rollup) {
      rollup.q.grantConsumeMessages(merger.taskRole);
      // A scan queues one job per due partition on the same queue.
      rollup.q.grantSendMessages(merger.taskRole);
      const rolled = [...datasetPrefixes, ...(monthlyPrefix ? [`${monthlyPrefix}/${MONTHLY_TABLE.dataset}`] : [])];
      merger.taskRole.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'RollupListTables',
          actions: ['s3:ListBucket'],
          resources: [output.bucketArn],
          conditions: { StringLike: { 's3:prefix': rolled.flatMap((p) => [p, `${p}/*`]) } },
        }),
      );
      merger.taskRole.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'RollupReadWriteDelete',
          actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
          resources: rolled.map((p) => output.arnForObjects(`${p}/*`)),
        }),
      );
      // Hourly: the merger finds the closed partitions and rolls each up under a lease.
      const scheduleRole = new iam.Role(this, 'RollupScheduleRole', {
        assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
        description: 'EventBridge Scheduler: sends the hourly rollup scan',
      });
      if (key) {
        acknowledge(
          scheduleRole,
          'AwsSolutions::AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
          "Sending to a queue encrypted with the stack's key needs GenerateDataKey (CDK's grant for SQS), on that key only.",
        );
      }
      new scheduler.Schedule(this, 'RollupSchedule', {
        scheduleName: named('rollup-scan'),
        description: 'flowmerge: hourly rollup scan of closed partitions',
        schedule: scheduler.ScheduleExpression.rate(Duration.hours(1)),
        target: new schedulerTargets.SqsSendMessage(rollup.q, {
          role: scheduleRole,
          input: scheduler.ScheduleTargetInput.fromText(ROLLUP_SCAN),
          deadLetterQueue: rollup.dlq,
          retryAttempts: 3,
        }),
      });
    }
    if (props.deleteMerged) {
      merger.taskRole.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'DeleteMergedRaw',
          actions: ['s3:DeleteObject'],
          resources: rawPatterns.map((p) => rawBucket.arnForObjects(p)),
        }),
      );
    }
    mapper.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'LedgerClaims',
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:ConditionCheckItem'],
        resources: [this.ledger.tableArn],
      }),
    );
    mapper.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteManifests',
        actions: ['s3:PutObject'],
        resources: [output.arnForObjects(`${workPrefix}/manifests/*`)],
      }),
    );
    merger.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'LedgerCommits',
        actions: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:UpdateItem'],
        resources: [this.ledger.tableArn],
      }),
    );
    merger.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ReadRawAndManifests',
        actions: ['s3:GetObject'],
        // The enabled sources' keys only: other log types in a shared bucket stay unreadable.
        resources: [...rawPatterns.map((p) => rawBucket.arnForObjects(p)), output.arnForObjects(`${workPrefix}/manifests/*`)],
      }),
    );
    if (props.rawKmsKeyArn) {
      merger.taskRole.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'DecryptRaw',
          actions: ['kms:Decrypt'],
          resources: [props.rawKmsKeyArn],
          conditions: { StringEquals: { 'kms:ViaService': `s3.${this.region}.amazonaws.com` } },
        }),
      );
    }
    merger.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteParquetAndQuarantine',
        // A window written from spilled parts is uploaded in parts; a failed upload is aborted.
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [
          ...datasetPrefixes.map((p) => output.arnForObjects(`${p}/*`)),
          output.arnForObjects(`${workPrefix}/quarantine/*`),
        ],
      }),
    );
    // ---- cdk-nag acknowledgements, each with its reason ------------------------------------------
    const arn = (b: s3.IBucket) => {
      const cfn = b.node.defaultChild as CfnElement | undefined;
      return cfn ? `<${this.resolve(this.getLogicalId(cfn))}.Arn>` : `arn:<AWS::Partition>:s3:::${b.bucketName}`;
    };
    const prefixes =
      'S3 object permissions are limited to the prefixes each worker reads or writes (manifests, Parquet, quarantine records); object keys below them are chosen at run time.';
    for (const [svc, resources] of [
      [mapper, [`${arn(output)}/${workPrefix}/manifests/*`]],
      [
        merger,
        [
          `${arn(output)}/${workPrefix}/manifests/*`,
          ...rawPatterns.map((p) => `${arn(rawBucket)}/${p}`),
          `${arn(output)}/${workPrefix}/quarantine/*`,
          ...datasetPrefixes.map((p) => `${arn(output)}/${p}/*`),
          ...(rollup && monthlyPrefix ? [`${arn(output)}/${monthlyPrefix}/${MONTHLY_TABLE.dataset}/*`] : []),
        ],
      ],
    ] as const) {
      for (const r of resources) {
        const reason = r.startsWith(arn(rawBucket))
          ? 'Raw log objects are named by AWS (AWSLogs/<account>/vpcflowlogs/..., AWSLogs/<account>/CloudTrail/...) or by the capture upload (<dnsPrefix><server>/...): the merger reads the enabled sources\' keys of the raw bucket, and (with deleteMerged) deletes them once merged.'
          : prefixes;
        acknowledge(svc.taskRole, `AwsSolutions::AwsSolutions-IAM5[Resource::${r}]`, reason);
      }
      if (props.tracing) {
        acknowledge(
          svc.taskRole,
          'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
          'X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling* and CloudWatch PutMetricData support no resource-level permissions.',
        );
      }
      acknowledge(
        svc.executionRole,
        'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
        'ecr:GetAuthorizationToken, added by CDK to pull the image asset, supports no resource-level permissions.',
      );
      if (key) {
        for (const action of ['kms:GenerateDataKey*', 'kms:ReEncrypt*']) {
          acknowledge(
            svc.taskRole,
            `AwsSolutions::AwsSolutions-IAM5[Action::${action}]`,
            "CDK's grantEncryptDecrypt on the stack's one customer-managed key: the wildcard covers the GenerateDataKey and ReEncrypt variants SQS, S3 and DynamoDB call, on that key only.",
          );
        }
      }
    }
    const notifications = this.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
    if (notifications) {
      acknowledge(
        notifications,
        'AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        "CDK's own handler that configures the bucket notification uses the basic Lambda logging policy; it runs only on deploy.",
      );
    }

    // ---- Alarms, to an SNS topic -------------------------------------------------------------------
    const topic: sns.ITopic = props.alarmTopicArn
      ? sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn)
      : new sns.Topic(this, 'AlarmTopic', {
          topicName: named('alarms'),
          displayName: `flowmerge${stage ? ` ${stage}` : ''} alarms`,
          enforceSSL: true,
          masterKey: key ?? kms.Alias.fromAliasName(this, 'SnsManagedKey', 'alias/aws/sns'),
        });
    const alarmAction = new cwActions.SnsAction(topic);
    const alarms: cloudwatch.Alarm[] = [];
    // A job's oldest message: merge and raw jobs run within minutes; a rollup job may wait out a
    // crashed merger's lease (15 minutes) before it runs.
    const oldest = { Raw: 15, Merge: 15, Rollup: 45 } as const;
    for (const [name, q] of [['Raw', raw] as const, ['Merge', merge] as const, ...(rollup ? [['Rollup', rollup] as const] : [])]) {
      alarms.push(new cloudwatch.Alarm(this, `${name}DeadLetters`, {
        alarmDescription: `flowmerge: messages in the ${name.toLowerCase()} dead-letter queue`,
        metric: q.dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }));
      alarms.push(new cloudwatch.Alarm(this, `${name}OldestMessage`, {
        alarmDescription: `flowmerge: the ${name.toLowerCase()} queue's oldest message is over ${oldest[name]} minutes old`,
        metric: q.q.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(5), statistic: 'Maximum' }),
        threshold: Duration.minutes(oldest[name]).toSeconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }));
    }
    // Quarantined objects, from the merger's own log line (one per object, with its bucket, key
    // and reason): it is there whether or not the metrics collector runs.
    const quarantined = new logs.MetricFilter(this, 'QuarantinedObjects', {
      logGroup: merger.logGroup,
      metricNamespace: stage ? `flowmerge/${stage}` : 'flowmerge',
      metricName: 'QuarantinedObjects',
      filterPattern: logs.FilterPattern.all(
        logs.FilterPattern.stringValue('$.message', '=', 'object quarantined'),
        logs.FilterPattern.stringValue('$.target', '=', 'flowmerge_aws::merger'),
      ),
      metricValue: '1',
      defaultValue: 0,
    });
    alarms.push(new cloudwatch.Alarm(this, 'Quarantined', {
      alarmDescription: 'flowmerge: objects were quarantined (the merger logs each with its key and reason)',
      metric: quarantined.metric({ period: Duration.minutes(5), statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    }));
    for (const a of alarms) a.addAlarmAction(alarmAction);

    // ---- Glue table and Athena workgroup -------------------------------------------------------------
    const databaseName = stage ? `flowmerge_${stage.replace(/-/g, '_')}` : 'flowmerge';
    const database = new glue.CfnDatabase(this, 'Database', {
      catalogId: this.account,
      databaseInput: { name: databaseName, description: `flowmerge outputs${stage ? ` (${stage})` : ''}` },
    });
    const glueTable = (id: string, table: TableJson, location: string) => {
      const parameters: Record<string, string> = { EXTERNAL: 'TRUE', classification: 'parquet' };
      for (const [k, v] of Object.entries(table.parameters)) {
        parameters[k] = v.replace('${location}', location);
      }
      return new glue.CfnTable(this, id, {
        catalogId: this.account,
        databaseName,
        tableInput: {
          name: table.name,
          tableType: 'EXTERNAL_TABLE',
          parameters,
          partitionKeys: table.partitionKeys,
          storageDescriptor: {
            columns: table.columns,
            location,
            inputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
            outputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
            serdeInfo: { serializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' },
          },
        },
      });
    };
    TABLES.forEach((table, i) => {
      const location = `s3://${output.bucketName}/${datasetPrefixes[i]}/`;
      const id = ['VpcFlowLogsTable', 'CloudTrailTable', 'DnsQueriesTable'][i];
      glueTable(id, table, location).addResourceDependency(database);
    });
    if (rollup && monthlyPrefix) {
      const location = `s3://${output.bucketName}/${monthlyPrefix}/${MONTHLY_TABLE.dataset}/`;
      glueTable('CloudTrailMonthlyTable', MONTHLY_TABLE, location).addResourceDependency(database);
    }
    new athena.CfnWorkGroup(this, 'WorkGroup', {
      name: names,
      description: 'Queries over flowmerge outputs',
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        resultConfiguration: {
          outputLocation: `s3://${output.bucketName}/athena-results/`,
          encryptionConfiguration: key ? { encryptionOption: 'SSE_KMS', kmsKey: key.keyArn } : { encryptionOption: 'SSE_S3' },
        },
      },
    });

    new CfnOutput(this, 'RawBucketName', { value: rawBucket.bucketName });
    if (crossAccount) {
      // What the raw bucket's account must add (RawBucketAccessStack prints the same): the
      // merger's role is named, so these statements can name it.
      const mergerRoleArn = `arn:${this.partition}:iam::${this.account}:role/${mergerRoleName(stage)}`;
      new CfnOutput(this, 'RawBucketPolicyStatement', {
        description: `Add to the bucket policy of ${props.rawBucketName} in account ${props.rawBucketAccount}`,
        value: this.toJsonString(
          rawBucketPolicyStatement({
            bucketName: rawBucket.bucketName,
            mergerRoleArn,
            patterns: rawPatterns,
            deleteMerged: props.deleteMerged ?? false,
            partition: this.partition,
          }),
        ),
      });
      if (props.rawKmsKeyArn) {
        new CfnOutput(this, 'RawKeyPolicyStatement', {
          description: `Add to the key policy of ${props.rawKmsKeyArn}`,
          value: this.toJsonString(rawKeyPolicyStatement({ mergerRoleArn, region: this.region })),
        });
      }
    }
    new CfnOutput(this, 'OutputLocation', { value: `s3://${output.bucketName}/${prefix}` });
    new CfnOutput(this, 'RawQueueUrl', { value: raw.q.queueUrl });
    new CfnOutput(this, 'MergeQueueUrl', { value: merge.q.queueUrl });
    if (rollup) new CfnOutput(this, 'RollupQueueUrl', { value: rollup.q.queueUrl });
  }

  /** A worker service: task definition, container (+ ADOT sidecar), logs, scaling on its queue. */
  private service(
    name: string,
    o: {
      cluster: ecs.Cluster;
      dockerfile: string;
      cpu: number;
      memoryMiB: number;
      environment: Record<string, string>;
      queues: sqs.Queue[];
      minTasks: number;
      maxTasks: number;
      placement: { subnets: ec2.SubnetSelection; publicIp: boolean };
      key?: kms.IKey;
      /** A writable folder on the task's ephemeral storage (the root filesystem is read-only). */
      scratch?: string;
      /** A fixed name for the task role (it is then referred to from outside the stack). */
      roleName?: string;
      props: FlowmergeStackProps;
    },
  ): { service: ecs.FargateService; taskRole: iam.IRole; executionRole: iam.IRole; logGroup: logs.LogGroup } {
    const arm = o.props.arm64;
    const taskDefinition = new ecs.FargateTaskDefinition(this, `${name}Task`, {
      cpu: o.cpu,
      memoryLimitMiB: o.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: arm ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    if (o.roleName) (taskDefinition.taskRole.node.defaultChild as iam.CfnRole).roleName = o.roleName;
    const logGroup = new logs.LogGroup(this, `${name}Logs`, {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
      encryptionKey: o.key,
    });
    const environment: Record<string, string> = { ...o.environment };
    if (o.props.tracing) {
      environment.OTEL_EXPORTER_OTLP_ENDPOINT = 'http://localhost:4318';
      environment.OTEL_EXPORTER_OTLP_PROTOCOL = 'http/protobuf';
      environment.OTEL_SERVICE_NAME = `flowmerge-${name.toLowerCase()}`;
    }
    const app = taskDefinition.addContainer(name.toLowerCase(), {
      image: ecs.ContainerImage.fromAsset(REPO_ROOT, {
        file: o.dockerfile,
        platform: arm ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      }),
      environment,
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: name.toLowerCase(), logGroup }),
      stopTimeout: STOP_TIMEOUT,
      readonlyRootFilesystem: true,
      essential: true,
    });
    if (o.scratch) {
      taskDefinition.addVolume({ name: 'scratch' });
      app.addMountPoints({ sourceVolume: 'scratch', containerPath: o.scratch, readOnly: false });
    }
    if (o.props.tracing) {
      // Without public IPs the tasks cannot reach public.ecr.aws: the collector's image is then
      // copied into the stack's asset repository at deploy (docker/otel-collector.Dockerfile).
      const collectorImage = o.placement.publicIp
        ? ecs.ContainerImage.fromRegistry(ADOT_IMAGE)
        : ecs.ContainerImage.fromAsset(REPO_ROOT, {
            file: 'docker/otel-collector.Dockerfile',
            platform: arm ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
          });
      const collector = taskDefinition.addContainer('otel-collector', {
        image: collectorImage,
        environment: { AOT_CONFIG_CONTENT: ADOT_CONFIG },
        logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'otel', logGroup }),
        memoryReservationMiB: 64,
        essential: false,
        readonlyRootFilesystem: true,
      });
      // The collector starts first and stops last, so the worker's final spans get out.
      app.addContainerDependencies({ container: collector, condition: ecs.ContainerDependencyCondition.START });
      taskDefinition.addToTaskRolePolicy(
        new iam.PolicyStatement({
          sid: 'XRayAndMetrics',
          actions: [
            'xray:PutTraceSegments',
            'xray:PutTelemetryRecords',
            'xray:GetSamplingRules',
            'xray:GetSamplingTargets',
            'cloudwatch:PutMetricData',
          ],
          resources: ['*'],
        }),
      );
    }
    acknowledge(
      taskDefinition,
      'AwsSolutions-ECS2',
      'The environment holds resource names and tuning only, no secrets (credentials come from the task role).',
    );
    const service = new ecs.FargateService(this, `${name}Service`, {
      cluster: o.cluster,
      taskDefinition,
      desiredCount: o.minTasks,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      assignPublicIp: o.placement.publicIp,
      vpcSubnets: o.placement.subnets,
      circuitBreaker: { rollback: true },
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });
    // Step scaling on the queues' backlog (visible + in flight): out from zero at the first
    // message, in to zero only when nothing is queued or being worked on.
    const usingMetrics: Record<string, cloudwatch.IMetric> = {};
    o.queues.forEach((q, i) => {
      usingMetrics[`visible${i}`] = q.metricApproximateNumberOfMessagesVisible({
        period: Duration.minutes(1),
        statistic: 'Maximum',
      });
      usingMetrics[`inflight${i}`] = q.metricApproximateNumberOfMessagesNotVisible({
        period: Duration.minutes(1),
        statistic: 'Maximum',
      });
    });
    const backlog = new cloudwatch.MathExpression({
      label: `${name} backlog`,
      expression: o.queues.map((_, i) => `visible${i} + inflight${i}`).join(' + '),
      usingMetrics,
      period: Duration.minutes(1),
    });
    const scaling = service.autoScaleTaskCount({ minCapacity: o.minTasks, maxCapacity: o.maxTasks });
    scaling.scaleOnMetric(`${name}Backlog`, {
      metric: backlog,
      adjustmentType: applicationautoscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      scalingSteps: [
        { upper: 0, change: -o.maxTasks },
        { lower: 1, change: +1 },
        { lower: 100, change: +2 },
        { lower: 1000, change: +4 },
      ],
      cooldown: Duration.minutes(2),
      evaluationPeriods: 2,
    });
    return {
      service,
      taskRole: taskDefinition.taskRole,
      executionRole: taskDefinition.obtainExecutionRole(),
      logGroup,
    };
  }
}

/** The interface endpoints tasks in isolated subnets need (S3 and DynamoDB have gateway endpoints). */
export function interfaceEndpoints(tracing: boolean): [string, ec2.InterfaceVpcEndpointAwsService][] {
  return [
    ['Sqs', ec2.InterfaceVpcEndpointAwsService.SQS],
    ['EcrApi', ec2.InterfaceVpcEndpointAwsService.ECR],
    ['EcrDocker', ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER],
    ['Logs', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS],
    ...(tracing
      ? ([
          ['XRay', ec2.InterfaceVpcEndpointAwsService.XRAY],
          ['Monitoring', ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING],
        ] as [string, ec2.InterfaceVpcEndpointAwsService][])
      : []),
  ];
}

/** The raw bucket's lifecycle (created bucket only): archive, then expire, after the days given. */
export function rawLifecycle(props: FlowmergeStackProps): s3.LifecycleRule[] {
  const archive = props.rawArchiveDays ?? 0;
  const expire = props.rawExpireDays;
  if (archive > 0 && expire > 0 && expire <= archive) {
    throw new Error(`rawExpireDays (${expire}) must be after rawArchiveDays (${archive})`);
  }
  const rule: s3.LifecycleRule = {
    id: 'archive-then-expire-raw',
    ...(archive > 0
      ? { transitions: [{ storageClass: s3.StorageClass.GLACIER, transitionAfter: Duration.days(archive) }] }
      : {}),
    ...(expire > 0 ? { expiration: Duration.days(expire) } : {}),
  };
  return archive > 0 || expire > 0 ? [rule] : [];
}

/** The ADOT collector's image (docker/otel-collector.Dockerfile names the same). */
export const ADOT_IMAGE = 'public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3';

/** The ADOT collector's configuration: OTLP in, traces to X-Ray, metrics to CloudWatch (EMF). */
export const ADOT_CONFIG = `receivers:
  otlp:
    protocols:
      http:
        endpoint: 0.0.0.0:4318
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch:
exporters:
  awsxray:
  awsemf:
    namespace: flowmerge
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [awsxray]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [awsemf]
`;
