import IoMTCore

/// One pending wake-up at a monotonic deadline (milliseconds), re-armed whenever the owner's
/// earliest deadline changes. Not a polling loop: the task sleeps until the deadline, once.
struct DeadlineTimer: Sendable {
    private var task: Task<Void, Never>?
    private(set) var armed: UInt64?

    /// Arms for `deadline` (nil disarms); `fire` runs once when it passes unless re-armed first.
    mutating func arm(_ deadline: UInt64?, now: UInt64, fire: @escaping @Sendable () async -> Void) {
        if deadline == armed { return }
        task?.cancel()
        armed = deadline
        guard let deadline else { task = nil; return }
        let delay = deadline > now ? deadline - now : 0
        task = Task {
            try? await Task.sleep(for: .milliseconds(Int64(delay)))
            if Task.isCancelled { return }
            await fire()
        }
    }

    /// Forget the armed deadline (call from `fire` before re-arming).
    mutating func fired() { armed = nil; task = nil }

    mutating func cancel() {
        task?.cancel()
        task = nil
        armed = nil
    }
}

/// The host's monotonic clock in milliseconds (time is an input to every state machine).
func hostNow() -> UInt64 { UInt64(max(0, monotonicMilliseconds())) }
