# The ADOT collector sidecar, copied into the stack's own ECR asset repository at deploy: tasks in
# private subnets (-c privateSubnets=true) reach ECR through its VPC endpoints, but not
# public.ecr.aws. Keep the tag equal to ADOT_IMAGE in infra-cdk/lib/flowmerge-stack.ts.
FROM public.ecr.aws/aws-observability/aws-otel-collector:v0.43.3
