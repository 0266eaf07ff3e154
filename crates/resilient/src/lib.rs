//! resilient: resilience strategies that return typed results.
