// Assertions on the synthesized template (Template.fromStack), the cdk-nag gate, and agreement
// with the Rust code: the containers' environment and the Glue table.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { RawBucketAccessStack } from '../lib/raw-access-stack.js';
import {
  FlowmergeStack,
  type FlowmergeStackProps,
  MONTHLY_TABLE,
  MERGER_MEMORY_LIMIT,
  MERGER_MEMORY_MIB,
  OPTIONAL_UNSET,
  REPO_ROOT,
  ROLLUP_SCAN,
  SPILL_DIR,
  TABLES,
  VISIBILITY_TIMEOUT,
} from '../lib/flowmerge-stack.js';

const BASE: FlowmergeStackProps = {
  outputPrefix: 'flows',
  rawExpireDays: 0,
  arm64: true,
  tracing: true,
  maxMappers: 2,
  maxMergers: 8,
};

function synth(overrides: Partial<FlowmergeStackProps> = {}): Template {
  const app = new App();
  const stack = new FlowmergeStack(app, 'Flowmerge', { ...BASE, ...overrides });
  return Template.fromStack(stack);
}

const template = synth();

/** The EventBridge rules of a template. */
function rules(t: Template): Record<string, any>[] {
  return (Object.values(t.findResources('AWS::Events::Rule')) as Resource[]).map((r) => r.Properties);
}

/** The object-key wildcards of a raw-object rule. */
function keyPatterns(rule: Record<string, any>): string[] {
  return rule.EventPattern.detail.object.key.map((k: any) => k.wildcard);
}

/** EventBridge's wildcard matching: `*` matches any run of characters, slashes included. */
function wildcard(pattern: string, key: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(key);
}

/** The IAM statements of a worker's task role in a template. */
function statementsIn(t: Template, role: string): any[] {
  return (Object.values(t.findResources('AWS::IAM::Policy')) as Resource[])
    .filter((p) => JSON.stringify(p.Properties.Roles).includes(`${role}TaskTaskRole`))
    .flatMap((p) => p.Properties.PolicyDocument.Statement);
}
type Resource = { Type: string; Properties: Record<string, any> };
const resources = (type: string): Resource[] => Object.values(template.findResources(type)) as Resource[];

/** The container definition of a worker's task. */
function container(t: Template, name: string): Record<string, any> {
  for (const td of Object.values(t.findResources('AWS::ECS::TaskDefinition')) as Resource[]) {
    const c = td.Properties.ContainerDefinitions.find((d: any) => d.Name === name);
    if (c) return c;
  }
  throw new Error(`no container ${name}`);
}

function envNames(c: Record<string, any>): string[] {
  return (c.Environment as { Name: string }[]).map((e) => e.Name).sort();
}

/** FLOWMERGE_* variables listed in a const of crates/aws/src/config.rs. */
/**
 * The variables a worker reads, as its binary prints them (`--print-config-reference`, the one
 * table the Rust code defines), tests-only ones left out. The binaries sit beside FLOWMERGE_BIN
 * (scripts/test.sh sets it), by default in the build cache the scripts use.
 */
function rustVars(worker: 'mapper' | 'merger'): string[] {
  const flowmerge =
    process.env.FLOWMERGE_BIN ??
    path.join(process.env.CARGO_TARGET_DIR ?? path.join(homedir(), '.cache/flowmerge/target'), 'debug/flowmerge');
  const bin = path.join(path.dirname(flowmerge), `flowmerge-${worker}`);
  const table = execFileSync(bin, ['--print-config-reference']).toString();
  return table
    .split('\n')
    .map((row) => row.split('|').map((c) => c.trim()))
    .filter((c) => c.length === 6 && c[1].startsWith('`FLOWMERGE_') && !c[4].startsWith('tests only'))
    .filter((c) => c[2] === worker || c[2] === 'both')
    .map((c) => c[1].replace(/`/g, ''))
    .sort();
}

describe('cdk-nag', () => {
  it('AwsSolutionsChecks passes with every finding acknowledged', () => {
    const app = new App();
    new FlowmergeStack(app, 'Flowmerge', BASE);
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    assert.doesNotThrow(() => app.synth());
  });

  it('fails synth on an unacknowledged finding (the gate is live)', () => {
    const app = new App();
    const stack = new Stack(app, 'Control');
    new s3.Bucket(stack, 'Bare');
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    assert.throws(() => app.synth());
  });
});

describe('storage', () => {
  it('creates an encrypted, TLS-only, private raw and output bucket', () => {
    const buckets = resources('AWS::S3::Bucket');
    assert.equal(buckets.length, 3, 'raw, output, access logs');
    for (const b of buckets) {
      assert.ok(b.Properties.BucketEncryption, 'encrypted');
      assert.deepEqual(b.Properties.PublicAccessBlockConfiguration, {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
    }
    template.resourceCountIs('AWS::S3::BucketPolicy', 3);
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('routes created objects to the raw queue through EventBridge, by source prefix', () => {
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
    const rule = rules(template)[0];
    assert.deepEqual(rule.EventPattern['detail-type'], ['Object Created']);
    assert.deepEqual(keyPatterns(rule), ['*AWSLogs/*/vpcflowlogs/*', '*AWSLogs/*/CloudTrail/*', 'dns/*']);
    assert.match(JSON.stringify(rule.Targets), /RawQueue/);
    // Digest and Insights files, ALB or Config logs in a shared bucket match none of them.
    for (const [key, hit] of [
      ['AWSLogs/o-abc/111122223333/CloudTrail/eu-west-1/2026/11/01/x.json.gz', true],
      ['AWSLogs/111122223333/vpcflowlogs/eu-west-1/2026/11/01/x.log.gz', true],
      ['dns/ns1/2026-11-01.pcap', true],
      ['AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/11/01/x.json.gz', false],
      ['AWSLogs/111122223333/elasticloadbalancing/eu-west-1/2026/11/01/x.log.gz', false],
      ['AWSLogs/111122223333/Config/eu-west-1/2026/11/01/x.json.gz', false],
    ] as const) {
      assert.equal(keyPatterns(rule).some((p) => wildcard(p, key)), hit, key);
    }
  });

  it('enables only the sources asked for, in the routing and in what the merger may read', () => {
    const t = synth({ sources: ['cloudtrail'] });
    assert.deepEqual(keyPatterns(rules(t)[0]), ['*AWSLogs/*/CloudTrail/*']);
    const read = statementsIn(t, 'Merger').find((st) => st.Sid === 'ReadRawAndManifests');
    const text = JSON.stringify(read.Resource);
    assert.match(text, /AWSLogs\/\*\/CloudTrail\/\*/);
    assert.ok(!text.includes('vpcflowlogs') && !text.includes('dns/'), text);
    assert.throws(() => synth({ sources: ['alb' as any] }), /unknown source/);
  });

  it('imports an existing flow log bucket by name and turns on its EventBridge notifications', () => {
    const t = synth({ rawBucketName: 'org-flow-logs' });
    assert.equal(Object.keys(t.findResources('AWS::S3::Bucket')).length, 2, 'output and access logs only');
    t.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: 'org-flow-logs',
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
  });

  it('expires raw objects when asked', () => {
    synth({ rawExpireDays: 7 }).hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 7, Status: 'Enabled' })]) },
    });
  });

  it('keeps the ledger on demand, with TTL on expires_at and point-in-time recovery', () => {
    template.hasResourceProperties('AWS::DynamoDB::GlobalTable', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
      Replicas: [Match.objectLike({ PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } })],
    });
  });
});

describe('queues', () => {
  it('has raw, merge and rollup queues with encrypted DLQs after 5 receives, visibility matching the workers', () => {
    const queues = resources('AWS::SQS::Queue');
    assert.equal(queues.length, 6);
    const main = queues.filter((q) => q.Properties.RedrivePolicy);
    assert.equal(main.length, 3);
    for (const q of queues) assert.equal(q.Properties.SqsManagedSseEnabled, true);
    for (const q of main) {
      assert.equal(q.Properties.RedrivePolicy.maxReceiveCount, 5);
      assert.equal(q.Properties.VisibilityTimeout, VISIBILITY_TIMEOUT.toSeconds());
    }
    for (const name of ['mapper', 'merger']) {
      const v = container(template, name).Environment.find((e: any) => e.Name === 'FLOWMERGE_VISIBILITY_TIMEOUT');
      assert.equal(v.Value, `${VISIBILITY_TIMEOUT.toSeconds()}s`);
    }
  });

  it('alarms on dead letters and on the age of the oldest message', () => {
    const alarms = resources('AWS::CloudWatch::Alarm').map((a) => a.Properties);
    const named = (metric: string) => alarms.filter((a) => a.MetricName === metric);
    assert.equal(named('ApproximateNumberOfMessagesVisible').length, 3, 'one per DLQ');
    assert.equal(named('ApproximateAgeOfOldestMessage').length, 3, 'raw, merge and rollup');
  });
});

describe('services', () => {
  it('runs both workers on Fargate with Container Insights, log retention and a drain stop timeout', () => {
    template.hasResourceProperties('AWS::ECS::Cluster', {
      ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }],
    });
    const services = resources('AWS::ECS::Service');
    assert.equal(services.length, 2);
    for (const s of services) {
      assert.equal(s.Properties.LaunchType, 'FARGATE');
      assert.equal(s.Properties.DesiredCount, 0);
    }
    for (const name of ['mapper', 'merger']) {
      const c = container(template, name);
      assert.equal(c.StopTimeout, 30);
      assert.equal(c.LogConfiguration.LogDriver, 'awslogs');
      assert.equal(c.Image['Fn::Sub'].includes('cdk-hnb659fds-container-assets'), true);
    }
    for (const lg of resources('AWS::Logs::LogGroup')) assert.ok(lg.Properties.RetentionInDays > 0);
  });

  it('builds images from docker/*.Dockerfile', () => {
    const app = new App({ outdir: mkdtempSync(path.join(tmpdir(), 'flowmerge-cdk-')) });
    new FlowmergeStack(app, 'Flowmerge', BASE);
    const assembly = app.synth();
    const assets = JSON.parse(readFileSync(path.join(assembly.directory, 'Flowmerge.assets.json'), 'utf8'));
    const files = Object.values(assets.dockerImages ?? {}).map((a: any) => a.source.dockerFile).sort();
    assert.deepEqual(files, ['docker/mapper.Dockerfile', 'docker/merger.Dockerfile']);
    for (const f of files) assert.ok(existsSync(path.join(REPO_ROOT, f)), f);
  });

  it('is ARM64 by default and x86_64 when arm64=false', () => {
    for (const td of resources('AWS::ECS::TaskDefinition')) {
      assert.equal(td.Properties.RuntimePlatform.CpuArchitecture, 'ARM64');
    }
    for (const td of Object.values(synth({ arm64: false }).findResources('AWS::ECS::TaskDefinition')) as Resource[]) {
      assert.equal(td.Properties.RuntimePlatform.CpuArchitecture, 'X86_64');
    }
  });

  it('adds an ADOT collector sidecar exporting to X-Ray, switchable off', () => {
    const c = container(template, 'otel-collector');
    assert.match(c.Image, /aws-otel-collector/);
    const config = c.Environment.find((e: any) => e.Name === 'AOT_CONFIG_CONTENT').Value;
    assert.match(config, /awsxray/);
    assert.equal(
      container(template, 'merger').Environment.find((e: any) => e.Name === 'OTEL_EXPORTER_OTLP_ENDPOINT').Value,
      'http://localhost:4318',
    );
    const off = synth({ tracing: false });
    assert.throws(() => container(off, 'otel-collector'));
    assert.ok(!envNames(container(off, 'merger')).includes('OTEL_EXPORTER_OTLP_ENDPOINT'));
  });

  it('scales each service from zero and back to zero on its queue backlog', () => {
    const targets = resources('AWS::ApplicationAutoScaling::ScalableTarget');
    assert.equal(targets.length, 2);
    for (const t of targets) assert.equal(t.Properties.MinCapacity, 0);
    const steps = resources('AWS::ApplicationAutoScaling::ScalingPolicy').map(
      (p) => p.Properties.StepScalingPolicyConfiguration,
    );
    assert.equal(steps.length, 4, 'scale-out and scale-in per service');
    assert.ok(steps.every((s) => s.AdjustmentType === 'ChangeInCapacity'));
    // Scale-out alarm at one message (visible + in flight), scale-in at zero.
    const alarms = resources('AWS::CloudWatch::Alarm').map((a) => a.Properties).filter((a) => a.Metrics);
    assert.equal(alarms.length, 4);
    const expressions = alarms.map((a) => a.Metrics.find((m: any) => m.Expression).Expression);
    assert.ok(expressions.includes('visible0 + inflight0'), 'the mapper: raw queue');
    assert.ok(
      expressions.includes('visible0 + inflight0 + visible1 + inflight1'),
      'the merger: merge and rollup queues, so an hourly scan wakes it from zero',
    );
    assert.ok(alarms.some((a) => a.ComparisonOperator === 'GreaterThanOrEqualToThreshold' && a.Threshold === 1));
    assert.ok(alarms.some((a) => a.ComparisonOperator === 'LessThanOrEqualToThreshold' && a.Threshold === 0));
  });

  it('gives the containers exactly the variables the Rust configuration reads', () => {
    for (const name of ['mapper', 'merger'] as const) {
      const given = envNames(container(template, name)).filter((n) => n.startsWith('FLOWMERGE_'));
      const read = rustVars(name).filter((n) => !OPTIONAL_UNSET.includes(n));
      assert.deepEqual(given, read, name);
    }
  });
});

describe('least privilege', () => {
  const statements = (role: string): any[] => {
    const policies = resources('AWS::IAM::Policy').filter((p) =>
      JSON.stringify(p.Properties.Roles).includes(`${role}TaskTaskRole`),
    );
    return policies.flatMap((p) => p.Properties.PolicyDocument.Statement);
  };
  const actions = (role: string) => new Set(statements(role).flatMap((s) => [s.Action].flat()));

  it('lets the mapper read the raw queue, send jobs, claim and write manifests only', () => {
    const a = actions('Mapper');
    assert.ok(a.has('sqs:ReceiveMessage') && a.has('sqs:SendMessage') && a.has('dynamodb:ConditionCheckItem'));
    assert.ok(!a.has('s3:GetObject') && !a.has('dynamodb:DeleteItem') && !a.has('dynamodb:Scan'));
    const put = statements('Mapper').find((s) => s.Sid === 'WriteManifests');
    assert.match(JSON.stringify(put.Resource), /flows\/_flowmerge\/manifests\/\*/);
  });

  it('lets the merger read raw objects and write only Parquet and quarantine records', () => {
    const a = actions('Merger');
    assert.ok(a.has('s3:GetObject') && a.has('s3:PutObject') && a.has('dynamodb:BatchGetItem'));
    assert.ok(!a.has('dynamodb:PutItem'));
    // It deletes only the files rollups replace (in the tables), never raw objects by default.
    const deletes = statements('Merger').filter((s) => [s.Action].flat().includes('s3:DeleteObject'));
    assert.deepEqual(
      deletes.map((s) => s.Sid),
      ['RollupReadWriteDelete'],
    );
    const deleted = JSON.stringify(deletes[0].Resource);
    for (const p of ['flows/vpcflowlogs/*', 'flows/cloudtrail/*', 'flows/dns/*', 'archive/cloudtrail_monthly/*']) {
      assert.ok(deleted.includes(p), p);
    }
    assert.ok(!deleted.includes('RawBucket'), deleted);
    // It sends only to the rollup queue (a scan's partition jobs).
    const sends = statements('Merger').filter((s) => [s.Action].flat().includes('sqs:SendMessage'));
    assert.equal(sends.length, 1);
    assert.match(JSON.stringify(sends[0].Resource), /RollupQueue/);
    const put = statements('Merger').find((s) => s.Sid === 'WriteParquetAndQuarantine');
    const text = JSON.stringify(put.Resource);
    assert.match(text, /flows\/vpcflowlogs\/\*/);
    assert.match(text, /flows\/_flowmerge\/quarantine\/\*/);
    // A large window is a multipart upload, aborted when it fails.
    assert.deepEqual(put.Action, ['s3:PutObject', 's3:AbortMultipartUpload']);
  });
});

describe('bounded memory', () => {
  it('gives the merger a memory limit under its task size and a writable spill volume', () => {
    const env = container(template, 'merger').Environment as { Name: string; Value: any }[];
    const value = (n: string) => env.find((e) => e.Name === n)?.Value;
    assert.equal(value('FLOWMERGE_MEMORY_LIMIT'), MERGER_MEMORY_LIMIT);
    assert.ok(parseInt(MERGER_MEMORY_LIMIT, 10) < MERGER_MEMORY_MIB);
    assert.equal(value('FLOWMERGE_SPILL_DIR'), SPILL_DIR);
    const merger = container(template, 'merger');
    assert.equal(merger.ReadonlyRootFilesystem, true);
    assert.deepEqual(merger.MountPoints, [
      { ContainerPath: SPILL_DIR, ReadOnly: false, SourceVolume: 'scratch' },
    ]);
    const task = resources('AWS::ECS::TaskDefinition').find((t) =>
      JSON.stringify(t.Properties.ContainerDefinitions).includes(SPILL_DIR),
    );
    assert.deepEqual(task?.Properties.Volumes, [{ Name: 'scratch' }]);
    // The image declares the same folder, owned by its user (ECS copies a VOLUME's ownership).
    const dockerfile = readFileSync(path.join(REPO_ROOT, 'docker/merger.Dockerfile'), 'utf8');
    assert.match(dockerfile, new RegExp(`VOLUME \\["${SPILL_DIR}"\\]`));
    assert.match(dockerfile, new RegExp(`--chown=65532:65532 /spill ${SPILL_DIR}`));
    assert.equal(container(template, 'mapper').MountPoints, undefined);
  });
});

describe('rollup and raw input', () => {
  it('sends a scan to the rollup queue every hour, with its dead-letter queue', () => {
    const schedules = resources('AWS::Scheduler::Schedule');
    assert.equal(schedules.length, 1);
    const sch = schedules[0].Properties;
    assert.equal(sch.ScheduleExpression, 'rate(1 hour)');
    assert.equal(sch.Target.Input, ROLLUP_SCAN);
    assert.match(JSON.stringify(sch.Target.Arn), /RollupQueue[0-9A-F]+/);
    assert.match(JSON.stringify(sch.Target.DeadLetterConfig), /RollupDlq/);
    const env = container(template, 'merger').Environment as { Name: string; Value: any }[];
    const value = (n: string) => env.find((e) => e.Name === n)?.Value;
    assert.match(JSON.stringify(value('FLOWMERGE_ROLLUP_QUEUE_URL')), /RollupQueue/);
    assert.equal(value('FLOWMERGE_ROLLUP_MIN_AGE'), '1h');
    assert.match(JSON.stringify(value('FLOWMERGE_ROLLUP_MONTHLY')), /archive/);
    assert.equal(value('FLOWMERGE_DELETE_MERGED'), 'false');
  });

  it('leaves rollups out with -c rollup=false', () => {
    const t = synth({ rollup: false });
    assert.equal(Object.keys(t.findResources('AWS::Scheduler::Schedule')).length, 0);
    assert.equal(Object.keys(t.findResources('AWS::SQS::Queue')).length, 4);
    assert.ok(!envNames(container(t, 'merger')).some((n) => n.startsWith('FLOWMERGE_ROLLUP_')));
    assert.equal(Object.keys(t.findResources('AWS::Glue::Table')).length, TABLES.length);
  });

  it('archives, then expires, raw objects after the days given', () => {
    const t = synth({ rawArchiveDays: 30, rawExpireDays: 365 });
    const buckets = Object.values(t.findResources('AWS::S3::Bucket')) as Resource[];
    const rules = buckets.flatMap((b) => b.Properties.LifecycleConfiguration?.Rules ?? []);
    const raw = rules.find((r: any) => r.Id === 'archive-then-expire-raw');
    assert.deepEqual(raw.Transitions, [{ StorageClass: 'GLACIER', TransitionInDays: 30 }]);
    assert.equal(raw.ExpirationInDays, 365);
    assert.throws(() => synth({ rawArchiveDays: 30, rawExpireDays: 30 }), /must be after/);
    assert.ok(!JSON.stringify(template.toJSON()).includes('archive-then-expire-raw'), 'none by default');
  });

  it('lets the merger delete raw objects only with -c deleteMerged=true', () => {
    const t = synth({ deleteMerged: true });
    const env = container(t, 'merger').Environment as { Name: string; Value: string }[];
    assert.equal(env.find((e) => e.Name === 'FLOWMERGE_DELETE_MERGED')?.Value, 'true');
    const policies = Object.values(t.findResources('AWS::IAM::Policy')) as Resource[];
    const statement = policies
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .find((s: any) => s.Sid === 'DeleteMergedRaw');
    assert.match(JSON.stringify(statement.Resource), /RawBucket/);
  });
});

describe('query', () => {
  const glueTables = () => resources('AWS::Glue::Table').map((r) => r.Properties.TableInput);
  const pascal = (cols: { name: string; type: string }[]) => cols.map((c) => ({ Name: c.name, Type: c.type }));

  it('defines one Glue table per source, with date partition projection to NOW, and an Athena workgroup', () => {
    const tables = glueTables();
    assert.deepEqual(
      tables.map((t) => t.Name),
      [...TABLES, MONTHLY_TABLE].map((t) => t.name),
    );
    [...TABLES, MONTHLY_TABLE].forEach((table, i) => {
      const t = tables[i];
      assert.deepEqual(t.StorageDescriptor.Columns, pascal(table.columns));
      assert.deepEqual(t.PartitionKeys, pascal(table.partitionKeys));
      for (const k of Object.keys(table.parameters)) assert.ok(k in t.Parameters, k);
      assert.equal(t.Parameters['projection.enabled'], 'true');
      const column = table.partitionKeys[0].name;
      assert.equal(t.Parameters[`projection.${column}.type`], 'date');
      assert.match(t.Parameters[`projection.${column}.range`], /,NOW$/);
    });
    template.hasResourceProperties('AWS::Athena::WorkGroup', {
      WorkGroupConfiguration: Match.objectLike({
        EnforceWorkGroupConfiguration: true,
        ResultConfiguration: Match.objectLike({ EncryptionConfiguration: { EncryptionOption: 'SSE_S3' } }),
      }),
    });
  });

  it('agrees with `flowmerge ddl` table for table (when FLOWMERGE_BIN is given)', (t) => {
    const bin = process.env.FLOWMERGE_BIN;
    if (!bin) {
      // tests/cli.rs checks the table files against the Rust code from the other side.
      t.diagnostic('FLOWMERGE_BIN not set: compared with the table files only');
      return;
    }
    TABLES.forEach((table, i) => {
      const sources: Record<string, string> = { vpcflowlogs: 'vpcflow', cloudtrail: 'cloudtrail', dns: 'dns' };
      const source = sources[table.dataset] ?? table.dataset;
      const json = JSON.parse(execFileSync(bin, ['ddl', '--output', 's3://b/p', '--source', source, '--format', 'json']).toString());
      assert.deepEqual(json, table);
      assert.deepEqual(glueTables()[i].StorageDescriptor.Columns, pascal(json.columns));
    });
  });
});

describe('organisation deployment', () => {
  const PIPELINE = { account: '111122223333', region: 'eu-west-1' };
  const ORG = { ...BASE, rawBucketName: 'org-log-archive', rawBucketAccount: '999988887777', env: PIPELINE };
  const outputs = (t: Template) => t.toJSON().Outputs as Record<string, { Value: any }>;
  const joined = (v: any) => JSON.stringify(v);

  it('receives a raw bucket of another account through its EventBridge bus, and says what that account must add', () => {
    const t = synth({ ...ORG, rawKmsKeyArn: 'arn:aws:kms:eu-west-1:999988887777:key/abcd1234-12ab-34cd-56ef-1234567890ab', deleteMerged: true });
    t.hasResourceProperties('AWS::Events::EventBusPolicy', {
      Statement: Match.objectLike({ Action: 'events:PutEvents', Principal: { AWS: Match.anyValue() } }),
    });
    assert.match(joined(t.findResources('AWS::Events::EventBusPolicy')), /999988887777:root/);
    const rule = rules(t)[0];
    assert.deepEqual(rule.EventPattern.account, ['999988887777']);
    assert.deepEqual(rule.EventPattern.detail.bucket.name, ['org-log-archive']);
    assert.equal(Object.keys(t.findResources('Custom::S3BucketNotifications')).length, 0, 'not from this account');
    t.hasResourceProperties('AWS::IAM::Role', { RoleName: 'flowmerge-merger-task' });
    const policy = joined(outputs(t).RawBucketPolicyStatement.Value);
    for (const part of ['s3:GetObject', 's3:DeleteObject', 'role/flowmerge-merger-task', 'org-log-archive/*AWSLogs/*/vpcflowlogs/*']) {
      assert.ok(policy.includes(part), `${part} in ${policy}`);
    }
    assert.match(joined(outputs(t).RawKeyPolicyStatement.Value), /kms:Decrypt/);
    const decrypt = statementsIn(t, 'Merger').find((st) => st.Sid === 'DecryptRaw');
    assert.equal(decrypt.Resource, 'arn:aws:kms:eu-west-1:999988887777:key/abcd1234-12ab-34cd-56ef-1234567890ab');

    // The small stack for the bucket's own account.
    const app = new App();
    const access = new RawBucketAccessStack(app, 'Access', {
      env: { account: '999988887777', region: 'eu-west-1' },
      rawBucketName: 'org-log-archive',
      pipelineAccount: '111122223333',
      sources: ['vpcflow', 'cloudtrail'],
      rawKmsKeyArn: 'arn:aws:kms:eu-west-1:999988887777:key/abcd1234-12ab-34cd-56ef-1234567890ab',
    });
    const a = Template.fromStack(access);
    a.hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: 'org-log-archive',
      NotificationConfiguration: { EventBridgeConfiguration: {} },
    });
    const forward = rules(a)[0];
    assert.deepEqual(keyPatterns(forward), ['*AWSLogs/*/vpcflowlogs/*', '*AWSLogs/*/CloudTrail/*']);
    assert.match(joined(forward.Targets), /:111122223333:event-bus\/default/);
    const printed = joined(outputs(a).BucketPolicyStatement.Value);
    assert.ok(printed.includes('111122223333:role/flowmerge-merger-task') && !printed.includes('DeleteObject'), printed);
    assert.match(joined(outputs(a).KeyPolicyStatement.Value), /kms:ViaService/);
    assert.throws(() => synth({ ...BASE, rawBucketAccount: '999988887777' }), /needs rawBucketName/);
  });

  it('encrypts output, queues, ledger, topic and logs with one customer-managed key when asked', () => {
    // A customer-managed key on the ledger needs the stack's region (as any deploy has).
    const t = synth({ kmsKeyArn: 'create', env: PIPELINE });
    t.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    const keyRef = (v: any) => joined(v).includes('Key');
    const out = (Object.values(t.findResources('AWS::S3::Bucket')) as Resource[]).filter(
      (b) => b.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm === 'aws:kms',
    );
    assert.equal(out.length, 1, 'the output bucket');
    for (const q of Object.values(t.findResources('AWS::SQS::Queue')) as Resource[]) assert.ok(keyRef(q.Properties.KmsMasterKeyId));
    t.hasResourceProperties('AWS::DynamoDB::GlobalTable', { SSESpecification: Match.objectLike({ SSEType: 'KMS' }) });
    for (const lg of Object.values(t.findResources('AWS::Logs::LogGroup')) as Resource[]) assert.ok(keyRef(lg.Properties.KmsKeyId));
    t.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    // By default: AWS-managed keys only.
    assert.equal(Object.keys(template.findResources('AWS::KMS::Key')).length, 0);
    for (const q of resources('AWS::SQS::Queue')) assert.equal(q.Properties.SqsManagedSseEnabled, true);
  });

  it('runs the tasks without public IPs in private subnets, with the VPC endpoints they need', () => {
    const t = synth({ privateSubnets: true });
    for (const svc of Object.values(t.findResources('AWS::ECS::Service')) as Resource[]) {
      assert.equal(svc.Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp, 'DISABLED');
    }
    for (const sn of Object.values(t.findResources('AWS::EC2::Subnet')) as Resource[]) {
      assert.notEqual(sn.Properties.MapPublicIpOnLaunch, true);
    }
    assert.equal(Object.keys(t.findResources('AWS::EC2::InternetGateway')).length, 0);
    const services = (Object.values(t.findResources('AWS::EC2::VPCEndpoint')) as Resource[]).map((e) => joined(e.Properties.ServiceName));
    for (const s of ['.s3', '.dynamodb', '.sqs', '.ecr.api', '.ecr.dkr', '.logs', '.xray', '.monitoring']) {
      assert.ok(services.some((n) => n.includes(s)), `${s} endpoint: ${services}`);
    }
    assert.ok(!joined(container(t, 'otel-collector').Image).includes('public.ecr.aws'), 'the collector image is mirrored');
    for (const svc of resources('AWS::ECS::Service')) {
      assert.equal(svc.Properties.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp, 'ENABLED', 'default: public');
    }
  });

  it('uses an existing VPC and its subnets', () => {
    const t = synth({ vpcId: 'vpc-0123', vpcSubnetIds: ['subnet-a', 'subnet-b'], vpcAzs: ['eu-west-1a', 'eu-west-1b'] });
    assert.equal(Object.keys(t.findResources('AWS::EC2::VPC')).length, 0);
    for (const svc of Object.values(t.findResources('AWS::ECS::Service')) as Resource[]) {
      const net = svc.Properties.NetworkConfiguration.AwsvpcConfiguration;
      assert.deepEqual(net.Subnets, ['subnet-a', 'subnet-b']);
      assert.equal(net.AssignPublicIp, 'DISABLED');
    }
    assert.throws(() => synth({ vpcId: 'vpc-0123' }), /vpcSubnetIds/);
  });

  it('sends every alarm to a topic (created or given), and alarms on quarantined objects', () => {
    const alarms = (t: Template) =>
      (Object.values(t.findResources('AWS::CloudWatch::Alarm')) as Resource[])
        .map((a) => a.Properties)
        .filter((a) => !a.Metrics);
    assert.equal(resources('AWS::SNS::Topic').length, 1);
    for (const a of alarms(template)) assert.match(joined(a.AlarmActions), /AlarmTopic/, a.AlarmDescription);
    assert.ok(alarms(template).some((a) => a.MetricName === 'QuarantinedObjects'));
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ ($.message = "object quarantined") && ($.target = "flowmerge_aws::merger") }',
    });
    const given = 'arn:aws:sns:eu-west-1:111122223333:ops-pager';
    const t = synth({ alarmTopicArn: given });
    assert.equal(Object.keys(t.findResources('AWS::SNS::Topic')).length, 0);
    for (const a of alarms(t)) assert.deepEqual(a.AlarmActions, [given]);
  });

  it('prefixes named resources with the stage, so stages coexist in one account', () => {
    const names = (stage: string) => {
      const t = Template.fromStack(new FlowmergeStack(new App(), `Flowmerge-${stage}`, { ...BASE, stage }));
      const queues = (Object.values(t.findResources('AWS::SQS::Queue')) as Resource[]).map((q) => q.Properties.QueueName);
      const table = (Object.values(t.findResources('AWS::DynamoDB::GlobalTable')) as Resource[])[0].Properties.TableName;
      const db = (Object.values(t.findResources('AWS::Glue::Database')) as Resource[])[0].Properties.DatabaseInput.Name;
      const wg = (Object.values(t.findResources('AWS::Athena::WorkGroup')) as Resource[])[0].Properties.Name;
      return { queues, table, db, wg };
    };
    const dev = names('dev');
    const prod = names('prod');
    assert.ok(dev.queues.every((q: string) => q.startsWith('flowmerge-dev-')), dev.queues.join());
    assert.deepEqual([dev.table, dev.db, dev.wg], ['flowmerge-dev-ledger', 'flowmerge_dev', 'flowmerge-dev']);
    assert.deepEqual([prod.table, prod.db, prod.wg], ['flowmerge-prod-ledger', 'flowmerge_prod', 'flowmerge-prod']);
    assert.throws(() => synth({ stage: 'Prod!' }), /stage/);
  });

  it('versions the output bucket and expires replaced versions after a week', () => {
    const b = (resources('AWS::S3::Bucket') as Resource[]).find((x) => x.Properties.VersioningConfiguration);
    assert.equal(b?.Properties.VersioningConfiguration.Status, 'Enabled');
    assert.ok(
      b?.Properties.LifecycleConfiguration.Rules.some((r: any) => r.NoncurrentVersionExpiration?.NoncurrentDays === 7),
    );
    // Parts of an upload a killed merger never completed are aborted after a day.
    assert.ok(
      b?.Properties.LifecycleConfiguration.Rules.some(
        (r: any) => r.AbortIncompleteMultipartUpload?.DaysAfterInitiation === 1,
      ),
    );
  });

  it('keeps minMappers/minMergers tasks running when asked', () => {
    const t = synth({ minMappers: 1, minMergers: 2 });
    const mins = (Object.values(t.findResources('AWS::ApplicationAutoScaling::ScalableTarget')) as Resource[])
      .map((x) => x.Properties.MinCapacity)
      .sort();
    assert.deepEqual(mins, [1, 2]);
    assert.deepEqual(
      (Object.values(t.findResources('AWS::ECS::Service')) as Resource[]).map((x) => x.Properties.DesiredCount).sort(),
      [1, 2],
    );
    assert.throws(() => synth({ minMergers: 9 }), /must not exceed/);
  });

  it('passes cdk-nag with every option at once, and in the raw bucket account', () => {
    const app = new App();
    new FlowmergeStack(app, 'Everything', {
      ...ORG,
      rawKmsKeyArn: 'arn:aws:kms:eu-west-1:999988887777:key/abcd1234-12ab-34cd-56ef-1234567890ab',
      kmsKeyArn: 'create',
      privateSubnets: true,
      stage: 'prod',
      deleteMerged: true,
      minMergers: 1,
      sources: ['vpcflow', 'cloudtrail'],
    });
    new FlowmergeStack(app, 'ExistingVpc', {
      ...BASE,
      env: PIPELINE,
      vpcId: 'vpc-0123456789abcdef0',
      vpcSubnetIds: ['subnet-0123456789abcdef0'],
      vpcAzs: ['eu-west-1a'],
      alarmTopicArn: 'arn:aws:sns:eu-west-1:111122223333:ops',
      kmsKeyArn: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    });
    new RawBucketAccessStack(app, 'Access', {
      env: { account: '999988887777', region: 'eu-west-1' },
      rawBucketName: 'org-log-archive',
      pipelineAccount: '111122223333',
    });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    assert.doesNotThrow(() => app.synth());
  });
});
