# The Route 53 equivalent of meridian.example.zone: latency-based records for
# api.meridian.example, one per region, each answered only while that node's
# health check passes. Route 53 answers with the healthy record of the AWS
# region with the lowest latency to the resolver (or its EDNS client subnet);
# with every node unhealthy it answers as if all were healthy.
#
#   terraform init && terraform plan -var zone_id=Z0123456789ABCDEFGHIJ
#
# Route 53's health checkers call each node's admin listener from the
# internet: open port 9080 to the ROUTE53_HEALTHCHECKS ranges of AWS's
# published ip-ranges.json (and to nobody else but your operators).

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = "us-east-1" # Route 53 is global; health checks and records live here
}

variable "zone_id" {
  description = "The hosted zone of meridian.example"
  type        = string
}

variable "domain" {
  description = "The zone's name"
  type        = string
  default     = "meridian.example"
}

variable "nodes" {
  description = "One Meridian node per region: its public address and the AWS region whose latency it stands for"
  type = map(object({
    name       = string # the node's own name, under the zone
    ip         = string
    aws_region = string
  }))
  default = {
    us-east  = { name = "n1.us-east", ip = "192.0.2.11", aws_region = "us-east-1" }
    eu-west  = { name = "n2.eu-west", ip = "198.51.100.12", aws_region = "eu-west-1" }
    ap-south = { name = "n3.ap-south", ip = "203.0.113.13", aws_region = "ap-south-1" }
  }
}

variable "admin_port" {
  description = "The nodes' admin listener, where /readyz answers"
  type        = number
  default     = 9080
}

# /readyz answers 200 with {"ready":true,...,"usable_routes":N} once the node
# has applied the cluster state and a route has a usable upstream, 503
# otherwise; ?strict=true also answers 503 while the node has heard no quorum
# for longer than an election timeout (cut off: it still serves its last
# configuration, but regions that hear their cluster are preferred; when every
# record is unhealthy Route 53 answers with all of them, so a cluster without
# quorum keeps serving). HTTP_STR_MATCH also requires Meridian's body, so
# another server answering 200 on that port does not count as healthy.
resource "aws_route53_health_check" "node" {
  for_each = var.nodes

  type              = "HTTP_STR_MATCH"
  ip_address        = each.value.ip
  port              = var.admin_port
  resource_path     = "/readyz?strict=true"
  search_string     = "usable_routes"
  request_interval  = 10 # "fast" checks (30 is the cheaper default)
  failure_threshold = 3  # unhealthy after 3 failed checks: about 30 s
  measure_latency   = true
  # Healthy when more than 18% of the checker regions agree (Route 53's rule);
  # name a few on three continents so one region's network trouble does not decide.
  regions = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-northeast-1", "sa-east-1"]

  tags = {
    Name = "meridian-${each.key}"
  }
}

# Each node by name: Raft peers dial the addresses, operators the names.
resource "aws_route53_record" "node" {
  for_each = var.nodes

  zone_id = var.zone_id
  name    = "${each.value.name}.${var.domain}"
  type    = "A"
  ttl     = 300
  records = [each.value.ip]
}

# What applications use as base_url.
resource "aws_route53_record" "api" {
  for_each = var.nodes

  zone_id         = var.zone_id
  name            = "api.${var.domain}"
  type            = "A"
  ttl             = 30
  records         = [each.value.ip]
  set_identifier  = each.key
  health_check_id = aws_route53_health_check.node[each.key].id

  latency_routing_policy {
    region = each.value.aws_region
  }
}

# Pinned per region, failing over (as us-east.api ... in the PowerDNS zone):
# the region's own node while healthy, else the latency-nearest healthy other.
resource "aws_route53_record" "regional_primary" {
  for_each = var.nodes

  zone_id         = var.zone_id
  name            = "${each.key}.api.${var.domain}"
  type            = "A"
  ttl             = 30
  records         = [each.value.ip]
  set_identifier  = "primary"
  health_check_id = aws_route53_health_check.node[each.key].id

  failover_routing_policy {
    type = "PRIMARY"
  }
}

resource "aws_route53_record" "regional_secondary" {
  for_each = var.nodes

  zone_id        = var.zone_id
  name           = "${each.key}.api.${var.domain}"
  type           = "A"
  set_identifier = "secondary"

  alias {
    name                   = "api.${var.domain}"
    zone_id                = var.zone_id
    evaluate_target_health = true
  }

  failover_routing_policy {
    type = "SECONDARY"
  }

  depends_on = [aws_route53_record.api]
}

output "health_check_ids" {
  description = "Alarm on these (CloudWatch metric HealthCheckStatus, namespace AWS/Route53)"
  value       = { for k, hc in aws_route53_health_check.node : k => hc.id }
}
