//! SDK clients from the standard AWS configuration chain only (environment, profile, ECS task
//! role, ...), so one build runs against AWS, LocalStack and moto alike.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the shared SDK configuration (region defaults to `us-east-1` when none is configured).
pub async fn sdk_config() -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    let region =
        aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1");
    loader.region(region).load().await
}

/// Whether an endpoint override (an emulator) is configured for S3.
pub fn custom_s3_endpoint() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    // Emulators answer on one host name: address buckets by path there.
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_s3_endpoint())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn sqs(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}
