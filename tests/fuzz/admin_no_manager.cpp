// The Service reads a ManagerSource only when ztgate runs with --manager; admin_fuzz passes none,
// so the sync client (TLS, enrolment, controlplane/) is not linked into it or its seed program.
// Reaching this is a harness bug.
#include "manager_source.hpp"

std::string zt::appliance::ManagerSource::status_json() const { __builtin_trap(); }
