# An EKS cluster for mlops_platform: a CPU node group for Dagster, user code and serving,
# and a GPU node group (scaled from zero, tainted) for training steps. Storage: an S3 bucket
# for MLflow artifacts and Feast offline data, and EFS for the shared MLOPS_HOME volume.
# Not applied from this repository (no cloud account on the build machines).

data "aws_availability_zones" "available" {}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.13"

  name               = var.cluster_name
  cidr               = "10.42.0.0/16"
  azs                = slice(data.aws_availability_zones.available.names, 0, 3)
  private_subnets    = ["10.42.0.0/19", "10.42.32.0/19", "10.42.64.0/19"]
  public_subnets     = ["10.42.96.0/22", "10.42.100.0/22", "10.42.104.0/22"]
  enable_nat_gateway = true
  single_nat_gateway = true
}

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 20.24"

  cluster_name                             = var.cluster_name
  cluster_version                          = var.kubernetes_version
  vpc_id                                   = module.vpc.vpc_id
  subnet_ids                               = module.vpc.private_subnets
  cluster_endpoint_public_access           = true
  enable_cluster_creator_admin_permissions = true

  cluster_addons = {
    coredns                = {}
    kube-proxy             = {}
    vpc-cni                = {}
    aws-efs-csi-driver     = {}
    eks-pod-identity-agent = {}
  }

  eks_managed_node_groups = {
    cpu = {
      instance_types = var.cpu_instance_types
      min_size       = 2
      max_size       = 6
      desired_size   = 2
      labels         = { "mlops/pool" = "cpu" }
    }
    gpu = {
      ami_type       = "AL2_x86_64_GPU"
      instance_types = var.gpu_instance_types
      min_size       = 0
      max_size       = var.gpu_max_size
      desired_size   = 0
      labels         = { "mlops/pool" = "gpu" }
      taints = {
        gpu = { key = "nvidia.com/gpu", value = "true", effect = "NO_SCHEDULE" }
      }
    }
  }
}

resource "aws_s3_bucket" "artifacts" {
  bucket_prefix = "${var.cluster_name}-artifacts-"
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_efs_file_system" "mlops_home" {
  creation_token = "${var.cluster_name}-mlops-home"
  encrypted      = true
}

resource "aws_efs_mount_target" "mlops_home" {
  for_each        = toset(module.vpc.private_subnets)
  file_system_id  = aws_efs_file_system.mlops_home.id
  subnet_id       = each.value
  security_groups = [module.eks.node_security_group_id]
}
