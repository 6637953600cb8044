/// How a command ended.
public enum CommandOutcome: Sendable, Hashable {
    /// Command Complete (Vol 4 Part E 7.7.14); the first return byte is usually the Status.
    case complete(returnParameters: [UInt8])
    /// Command Status (Vol 4 Part E 7.7.15); the result comes later in its own event.
    case status(HCIStatus)
    /// No Command Complete/Status before the deadline.
    case timedOut
    /// `CommandFlow.reset()` dropped it.
    case aborted

    /// The status the controller reported: Command Status's, or the first return parameter
    /// of Command Complete; nil for timeouts, aborts and empty return parameters.
    public var commandStatus: HCIStatus? {
        switch self {
        case .complete(let rp): return rp.first.map { HCIStatus(rawValue: $0) }
        case .status(let s): return s
        case .timedOut, .aborted: return nil
        }
    }
}

public enum CommandFlowAction: Sendable, Hashable {
    /// Write this command to the transport now.
    case send(HCICommand)
    /// The command submitted with `token` finished.
    case complete(token: UInt64, CommandOutcome)
}

/// HCI command flow control, Core v5.4 Vol 4 Part E 4.4: the host may send as many commands as the
/// last Num_HCI_Command_Packets allowed (1 after power-on/reset). Commands wait in FIFO order.
/// Completions match the oldest outstanding command with the same opcode; an event for opcode
/// 0x0000 only updates credits; a completion nobody waits for is ignored and counted.
///
/// Every outstanding command has a deadline (`now + timeoutMs`). When it passes, `tick` fails the
/// command with `.timedOut` and frees its credit so the queue can move; a controller that misses
/// replies (the Bumble controller never answers LE Encrypt) may also be wedged: after repeated
/// timeouts the caller should reset the transport and controller (then call `reset()`).
public struct CommandFlow: Sendable {
    public let timeoutMs: UInt64
    public private(set) var credits = 1
    public private(set) var unexpectedCompletions = 0
    private var waiting: [(command: HCICommand, token: UInt64)] = []
    private var outstanding: [(opcode: HCIOpcode, token: UInt64, deadline: UInt64)] = []

    public init(timeoutMs: UInt64 = 2_000) { self.timeoutMs = timeoutMs }

    public var queuedCount: Int { waiting.count }
    public var outstandingCount: Int { outstanding.count }

    /// The earliest deadline of an outstanding command: call `tick` then.
    public var nextDeadline: UInt64? { outstanding.map(\.deadline).min() }

    public mutating func submit(_ command: HCICommand, token: UInt64, now: UInt64) -> [CommandFlowAction] {
        waiting.append((command, token))
        return pump(now: now)
    }

    /// Feed every decoded event; only Command Complete and Command Status matter here.
    public mutating func receive(_ event: HCIEvent, now: UInt64) -> [CommandFlowAction] {
        var out: [CommandFlowAction] = []
        switch event {
        case .commandComplete(let n, let op, let rp):
            credits = Int(n)
            out += finish(op, .complete(returnParameters: rp))
        case .commandStatus(let s, let n, let op):
            credits = Int(n)
            out += finish(op, .status(s))
        default:
            return []
        }
        return out + pump(now: now)
    }

    /// Fails commands whose deadline is at or before `now`, each freeing one credit.
    public mutating func tick(now: UInt64) -> [CommandFlowAction] {
        var out: [CommandFlowAction] = []
        outstanding.removeAll { o in
            guard o.deadline <= now else { return false }
            out.append(.complete(token: o.token, .timedOut))
            credits += 1
            return true
        }
        return out + pump(now: now)
    }

    /// The controller is being reset: outstanding and queued commands end with `.aborted`, and the
    /// credit count returns to 1 (after HCI_Reset, Vol 4 Part E 7.3.2). Submit HCI_Reset next.
    public mutating func reset() -> [CommandFlowAction] {
        let out = outstanding.map { CommandFlowAction.complete(token: $0.token, .aborted) }
            + waiting.map { CommandFlowAction.complete(token: $0.token, .aborted) }
        outstanding = []
        waiting = []
        credits = 1
        return out
    }

    private mutating func finish(_ op: HCIOpcode, _ outcome: CommandOutcome) -> [CommandFlowAction] {
        guard op != .noOperation else { return [] }
        guard let i = outstanding.firstIndex(where: { $0.opcode == op }) else {
            unexpectedCompletions += 1
            return []
        }
        let o = outstanding.remove(at: i)
        return [.complete(token: o.token, outcome)]
    }

    private mutating func pump(now: UInt64) -> [CommandFlowAction] {
        var out: [CommandFlowAction] = []
        while credits > 0, !waiting.isEmpty {
            let w = waiting.removeFirst()
            credits -= 1
            outstanding.append((w.command.opcode, w.token, now + timeoutMs))
            out.append(.send(w.command))
        }
        return out
    }
}
