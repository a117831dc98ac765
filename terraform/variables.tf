variable "region" {
  description = "AWS region of the cluster"
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "EKS cluster name"
  type        = string
  default     = "mlops-platform"
}

variable "kubernetes_version" {
  type    = string
  default = "1.31"
}

variable "cpu_instance_types" {
  description = "Node group for Dagster, the code server, runs and serving"
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "gpu_instance_types" {
  description = "Node group for training steps that ask for nvidia.com/gpu"
  type        = list(string)
  default     = ["g5.xlarge"]
}

variable "gpu_max_size" {
  description = "Upper bound of GPU nodes (the group scales from zero)"
  type        = number
  default     = 2
}
