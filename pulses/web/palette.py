"""The colours of statuses and priorities, shared by the admin and the dashboard."""

from pulses.models import Priority, Status

STATUS_COLOURS = {
    Status.PENDING: "#2563eb",
    Status.PROCESSING: "#7c3aed",
    Status.COMPLETED: "#16a34a",
    Status.FAILED: "#dc2626",
    Status.CANCELLED: "#6b7280",
}
PRIORITY_COLOURS = {
    Priority.CRITICAL: "#b91c1c",
    Priority.HIGH: "#ea580c",
    Priority.NORMAL: "#2563eb",
    Priority.LOW: "#0d9488",
    Priority.DEFERRED: "#6b7280",
}
