output "cluster_name" {
  value = module.eks.cluster_name
}

output "cluster_endpoint" {
  value = module.eks.cluster_endpoint
}

output "artifact_bucket" {
  description = "S3 bucket for MLflow artifacts and Feast offline data"
  value       = aws_s3_bucket.artifacts.bucket
}

output "mlops_home_efs_id" {
  description = "EFS file system for the shared MLOPS_HOME volume (ReadWriteMany)"
  value       = aws_efs_file_system.mlops_home.id
}
