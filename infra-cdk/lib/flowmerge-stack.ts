// The flowmerge deployment (docs/contracts.md §1): raw bucket → S3 notification → raw queue → mapper
// (Fargate) → merge queue → merger (Fargate) → Parquet in the output bucket, with the ledger in
// DynamoDB, both services scaled from zero on their queue's backlog, traces through an ADOT
// sidecar to X-Ray, alarms on dead letters and message age, and the Glue/Athena table that
// `flowmerge ddl` describes.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CfnElement, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps, Validations } from 'aws-cdk-lib';
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
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as schedulerTargets from 'aws-cdk-lib/aws-scheduler-targets';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct, Node } from 'constructs';
import vpcflowTable from './vpcflow-table.json' with { type: 'json' };
import cloudtrailTable from './cloudtrail-table.json' with { type: 'json' };
import dnsTable from './dns-table.json' with { type: 'json' };
import cloudtrailMonthlyTable from './cloudtrail-monthly-table.json' with { type: 'json' };

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

export interface FlowmergeStackProps extends StackProps {
  /** Import this existing (e.g. organisation-wide flow log) bucket instead of creating one. */
  readonly rawBucketName?: string;
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
  return {
    rawBucketName: get('rawBucketName') || undefined,
    outputPrefix: String(get('outputPrefix') ?? 'flows').replace(/^\/+|\/+$/g, ''),
    rawExpireDays: num(get('rawExpireDays'), 0),
    rawArchiveDays: num(get('rawArchiveDays'), 0),
    deleteMerged: bool(get('deleteMerged'), false),
    rollup: bool(get('rollup'), true),
    rollupMergeWindow: get('rollupMergeWindow') || undefined,
    monthlyPrefix: String(get('monthlyPrefix') ?? 'archive').replace(/^\/+|\/+$/g, ''),
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
export const OPTIONAL_UNSET = ['FLOWMERGE_FORMAT', 'FLOWMERGE_ROLLUP_MERGE_WINDOW'];

export class FlowmergeStack extends Stack {
  readonly rawQueue: sqs.Queue;
  readonly mergeQueue: sqs.Queue;
  readonly rollupQueue?: sqs.Queue;
  readonly ledger: dynamodb.TableV2;
  readonly outputBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: FlowmergeStackProps) {
    super(scope, id, props);
    const prefix = props.outputPrefix;
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
          serverAccessLogsBucket: accessLogs,
          serverAccessLogsPrefix: 'raw/',
          lifecycleRules: rawLifecycle(props),
          removalPolicy: RemovalPolicy.RETAIN,
        });

    this.outputBucket = new s3.Bucket(this, 'OutputBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'output/',
      lifecycleRules: [{ id: 'athena-results', prefix: 'athena-results/', expiration: Duration.days(30) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const output = this.outputBucket;

    // ---- Queues --------------------------------------------------------------------------
    const queue = (name: string) => {
      const dlq = new sqs.Queue(this, `${name}Dlq`, {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        retentionPeriod: Duration.days(14),
      });
      acknowledge(dlq, 'AwsSolutions-SQS3', 'This is a dead-letter queue; it has no DLQ of its own.');
      const q = new sqs.Queue(this, `${name}Queue`, {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
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
    rawBucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.SqsDestination(raw.q));

    // ---- Ledger --------------------------------------------------------------------------
    this.ledger = new dynamodb.TableV2(this, 'Ledger', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      timeToLiveAttribute: TTL_ATTRIBUTE,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- Network and cluster ---------------------------------------------------------------
    const vpcFlowLogs = new logs.LogGroup(this, 'VpcFlowLogs', { retention: logs.RetentionDays.ONE_MONTH });
    // Public subnets and gateway endpoints: no NAT gateway to pay for; tasks take no inbound traffic.
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC }],
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
      maxTasks: props.maxMappers,
      props,
    });
    const merger = this.service('Merger', {
      cluster,
      dockerfile: 'docker/merger.Dockerfile',
      cpu: 2048,
      memoryMiB: 4096,
      environment: mergerEnv,
      // Rollup jobs wake the mergers too: a scan arrives hourly, when they may be at zero.
      queues: rollup ? [merge.q, rollup.q] : [merge.q],
      maxTasks: props.maxMergers,
      props,
    });

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
      new scheduler.Schedule(this, 'RollupSchedule', {
        description: 'flowmerge: hourly rollup scan of closed partitions',
        schedule: scheduler.ScheduleExpression.rate(Duration.hours(1)),
        target: new schedulerTargets.SqsSendMessage(rollup.q, {
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
          resources: [rawBucket.arnForObjects('*')],
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
        resources: [rawBucket.arnForObjects('*'), output.arnForObjects(`${workPrefix}/manifests/*`)],
      }),
    );
    merger.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WriteParquetAndQuarantine',
        actions: ['s3:PutObject'],
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
          `${arn(rawBucket)}/*`,
          `${arn(output)}/${workPrefix}/quarantine/*`,
          ...datasetPrefixes.map((p) => `${arn(output)}/${p}/*`),
          ...(rollup && monthlyPrefix ? [`${arn(output)}/${monthlyPrefix}/${MONTHLY_TABLE.dataset}/*`] : []),
        ],
      ],
    ] as const) {
      for (const r of resources) {
        const reason = r.startsWith(arn(rawBucket))
          ? 'Raw log objects are named by AWS (AWSLogs/<account>/vpcflowlogs/..., AWSLogs/<account>/CloudTrail/...): the merger reads any object of the raw bucket, and only reads.'
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
    }
    const notifications = this.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
    if (notifications) {
      acknowledge(
        notifications,
        'AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        "CDK's own handler that configures the bucket notification uses the basic Lambda logging policy; it runs only on deploy.",
      );
    }

    // ---- Alarms ---------------------------------------------------------------------------------
    for (const [name, q] of [['Raw', raw] as const, ['Merge', merge] as const, ...(rollup ? [['Rollup', rollup] as const] : [])]) {
      new cloudwatch.Alarm(this, `${name}DeadLetters`, {
        alarmDescription: `flowmerge: messages in the ${name.toLowerCase()} dead-letter queue`,
        metric: q.dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      new cloudwatch.Alarm(this, `${name}OldestMessage`, {
        alarmDescription: `flowmerge: the ${name.toLowerCase()} queue's oldest message is over 15 minutes old`,
        metric: q.q.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(5), statistic: 'Maximum' }),
        threshold: Duration.minutes(15).toSeconds(),
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    // ---- Glue table and Athena workgroup -------------------------------------------------------------
    const database = new glue.CfnDatabase(this, 'Database', {
      catalogId: this.account,
      databaseInput: { name: 'flowmerge', description: 'flowmerge outputs' },
    });
    const glueTable = (id: string, table: TableJson, location: string) => {
      const parameters: Record<string, string> = { EXTERNAL: 'TRUE', classification: 'parquet' };
      for (const [k, v] of Object.entries(table.parameters)) {
        parameters[k] = v.replace('${location}', location);
      }
      return new glue.CfnTable(this, id, {
        catalogId: this.account,
        databaseName: 'flowmerge',
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
      name: 'flowmerge',
      description: 'Queries over flowmerge outputs',
      workGroupConfiguration: {
        enforceWorkGroupConfiguration: true,
        publishCloudWatchMetricsEnabled: true,
        resultConfiguration: {
          outputLocation: `s3://${output.bucketName}/athena-results/`,
          encryptionConfiguration: { encryptionOption: 'SSE_S3' },
        },
      },
    });

    new CfnOutput(this, 'RawBucketName', { value: rawBucket.bucketName });
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
      maxTasks: number;
      props: FlowmergeStackProps;
    },
  ): { service: ecs.FargateService; taskRole: iam.IRole; executionRole: iam.IRole } {
    const arm = o.props.arm64;
    const taskDefinition = new ecs.FargateTaskDefinition(this, `${name}Task`, {
      cpu: o.cpu,
      memoryLimitMiB: o.memoryMiB,
      runtimePlatform: {
        cpuArchitecture: arm ? ecs.CpuArchitecture.ARM64 : ecs.CpuArchitecture.X86_64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    const logGroup = new logs.LogGroup(this, `${name}Logs`, {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
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
    if (o.props.tracing) {
      const collector = taskDefinition.addContainer('otel-collector', {
        image: ecs.ContainerImage.fromRegistry('public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3'),
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
      desiredCount: 0,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      assignPublicIp: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
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
    const scaling = service.autoScaleTaskCount({ minCapacity: 0, maxCapacity: o.maxTasks });
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
    return { service, taskRole: taskDefinition.taskRole, executionRole: taskDefinition.obtainExecutionRole() };
  }
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
