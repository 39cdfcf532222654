"""Async client for Alibaba Cloud Call Center, OpenAPI 2017-07-05."""
