//! The VPC flow log field catalogue (AWS VPC user guide, "Flow log records", versions 2–8 and the
//! transit-gateway fields) with the Parquet type AWS's own Parquet delivery gives each field.

/// Physical type of a column in the output (docs/contracts.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Int32,
    Int64,
    String,
}

/// How a column takes part in a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Part of the merge key.
    Key,
    /// Summed over the merged records.
    Sum,
    /// Minimum over the merged records.
    Min,
    /// Maximum over the merged records.
    Max,
    /// Bitwise OR over the merged records.
    BitOr,
}

/// One documented flow-log field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name AWS uses in the header, e.g. `log-status`.
    pub name: &'static str,
    /// The output column name, e.g. `log_status`.
    pub column: &'static str,
    pub ty: FieldType,
    pub role: Role,
}

const fn f(name: &'static str, column: &'static str, ty: FieldType, role: Role) -> Field {
    Field {
        name,
        column,
        ty,
        role,
    }
}

use FieldType::{Int32 as I32, Int64 as I64, String as S};
use Role::{BitOr, Key, Max, Min, Sum};

/// Every documented field, in the canonical output column order.
pub const FIELDS: &[Field] = &[
    // v2 (the default format, in its default order)
    f("version", "version", I32, Key),
    f("account-id", "account_id", S, Key),
    f("interface-id", "interface_id", S, Key),
    f("srcaddr", "srcaddr", S, Key),
    f("dstaddr", "dstaddr", S, Key),
    f("srcport", "srcport", I32, Key),
    f("dstport", "dstport", I32, Key),
    f("protocol", "protocol", I32, Key),
    f("packets", "packets", I64, Sum),
    f("bytes", "bytes", I64, Sum),
    f("start", "start", I64, Min),
    f("end", "end", I64, Max),
    f("action", "action", S, Key),
    f("log-status", "log_status", S, Key),
    // v3
    f("vpc-id", "vpc_id", S, Key),
    f("subnet-id", "subnet_id", S, Key),
    f("instance-id", "instance_id", S, Key),
    f("tcp-flags", "tcp_flags", I32, BitOr),
    f("type", "type", S, Key),
    f("pkt-srcaddr", "pkt_srcaddr", S, Key),
    f("pkt-dstaddr", "pkt_dstaddr", S, Key),
    // v4
    f("region", "region", S, Key),
    f("az-id", "az_id", S, Key),
    f("sublocation-type", "sublocation_type", S, Key),
    f("sublocation-id", "sublocation_id", S, Key),
    // v5
    f("pkt-src-aws-service", "pkt_src_aws_service", S, Key),
    f("pkt-dst-aws-service", "pkt_dst_aws_service", S, Key),
    f("flow-direction", "flow_direction", S, Key),
    f("traffic-path", "traffic_path", I32, Key),
    // v6: transit gateway flow logs
    f("resource-type", "resource_type", S, Key),
    f("tgw-id", "tgw_id", S, Key),
    f("tgw-attachment-id", "tgw_attachment_id", S, Key),
    f("tgw-src-vpc-account-id", "tgw_src_vpc_account_id", S, Key),
    f("tgw-dst-vpc-account-id", "tgw_dst_vpc_account_id", S, Key),
    f("tgw-src-vpc-id", "tgw_src_vpc_id", S, Key),
    f("tgw-dst-vpc-id", "tgw_dst_vpc_id", S, Key),
    f("tgw-src-subnet-id", "tgw_src_subnet_id", S, Key),
    f("tgw-dst-subnet-id", "tgw_dst_subnet_id", S, Key),
    f("tgw-src-eni", "tgw_src_eni", S, Key),
    f("tgw-dst-eni", "tgw_dst_eni", S, Key),
    f("tgw-src-az-id", "tgw_src_az_id", S, Key),
    f("tgw-dst-az-id", "tgw_dst_az_id", S, Key),
    f("tgw-pair-attachment-id", "tgw_pair_attachment_id", S, Key),
    f("packets-lost-no-route", "packets_lost_no_route", I64, Sum),
    f("packets-lost-blackhole", "packets_lost_blackhole", I64, Sum),
    f(
        "packets-lost-mtu-exceeded",
        "packets_lost_mtu_exceeded",
        I64,
        Sum,
    ),
    f(
        "packets-lost-ttl-expired",
        "packets_lost_ttl_expired",
        I64,
        Sum,
    ),
    // v7: ECS
    f("ecs-cluster-arn", "ecs_cluster_arn", S, Key),
    f("ecs-cluster-name", "ecs_cluster_name", S, Key),
    f(
        "ecs-container-instance-arn",
        "ecs_container_instance_arn",
        S,
        Key,
    ),
    f(
        "ecs-container-instance-id",
        "ecs_container_instance_id",
        S,
        Key,
    ),
    f("ecs-container-id", "ecs_container_id", S, Key),
    f("ecs-second-container-id", "ecs_second_container_id", S, Key),
    f("ecs-service-name", "ecs_service_name", S, Key),
    f("ecs-task-definition-arn", "ecs_task_definition_arn", S, Key),
    f("ecs-task-arn", "ecs_task_arn", S, Key),
    f("ecs-task-id", "ecs_task_id", S, Key),
    // v8
    f("reject-reason", "reject_reason", S, Key),
];

/// Column added by the merge: how many raw records an output row stands for.
pub const MERGED_RECORDS: &str = "merged_records";

/// Column added by the merge: the start of the row's window (Unix seconds). A key: rows merge
/// only within one window, in a batch and again in a rollup.
pub const WINDOW_START: &str = "window_start";

/// The default (v2) format, used for a file without a header that has 14 fields.
pub const DEFAULT_V2: &[&str] = &[
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// The field of this AWS name, if documented.
pub fn field_by_name(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The field of this output column, if documented.
pub fn field_by_column(column: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.column == column)
}

/// Output column name of an AWS field name: `-` becomes `_`.
pub fn column_name(field_name: &str) -> String {
    field_name.replace('-', "_")
}

/// Position of a column in the canonical output order: documented fields first in catalogue
/// order, then unknown (string) columns by name, then `window_start` and `merged_records`.
pub fn column_rank(column: &str) -> (usize, &str) {
    if column == MERGED_RECORDS {
        return (usize::MAX, column);
    }
    if column == WINDOW_START {
        return (usize::MAX - 1, "");
    }
    match FIELDS.iter().position(|f| f.column == column) {
        Some(i) => (i, ""),
        None => (FIELDS.len(), column),
    }
}

/// How a column merges: documented fields by the catalogue, unknown ones are keys.
pub fn role_of_column(column: &str) -> Role {
    if column == MERGED_RECORDS {
        return Role::Sum;
    }
    field_by_column(column).map_or(Role::Key, |f| f.role)
}

/// Whether `token` is shaped like a header field name (`[a-z][a-z0-9-]*`).
pub fn is_field_name_shaped(token: &[u8]) -> bool {
    match token.split_first() {
        Some((first, rest)) => {
            first.is_ascii_lowercase()
                && rest
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(f.column, column_name(f.name), "{}", f.name);
            assert!(
                FIELDS[i + 1..].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
        }
        assert_eq!(FIELDS.len(), 58);
        assert!(DEFAULT_V2.iter().all(|n| field_by_name(n).is_some()));
    }

    #[test]
    fn types_follow_aws_parquet_delivery() {
        let ty = |c: &str| field_by_column(c).map(|f| f.ty);
        for c in [
            "version",
            "srcport",
            "dstport",
            "protocol",
            "tcp_flags",
            "traffic_path",
        ] {
            assert_eq!(ty(c), Some(FieldType::Int32), "{c}");
        }
        for c in [
            "packets",
            "bytes",
            "start",
            "end",
            "packets_lost_no_route",
            "packets_lost_blackhole",
            "packets_lost_mtu_exceeded",
            "packets_lost_ttl_expired",
        ] {
            assert_eq!(ty(c), Some(FieldType::Int64), "{c}");
        }
        assert_eq!(ty("account_id"), Some(FieldType::String));
    }

    #[test]
    fn header_shape() {
        assert!(is_field_name_shaped(b"log-status"));
        assert!(is_field_name_shaped(b"i-0123abc"));
        assert!(!is_field_name_shaped(b"-"));
        assert!(!is_field_name_shaped(b"2"));
        assert!(!is_field_name_shaped(b"ACCEPT"));
        assert!(!is_field_name_shaped(b"10.0.0.1"));
    }
}
