import IoMTHCI
import IoMTHCITransport

/// What can go wrong in the host, each with a message an operator can act on.
public enum BluetoothHostError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The transport failed or closed: the controller is gone (unplugged, process died).
    case transport(String)
    /// An HCI command got no completion within its deadline (the controller may be wedged).
    case commandTimedOut(String)
    /// An HCI command completed with an error status.
    case commandFailed(String, HCIStatus)
    /// The controller's answer to a command was malformed.
    case malformedReply(String)
    /// A connection attempt is already in progress (LE allows one at a time, Core v5.4 Vol 4 Part E 7.8.12).
    case busy
    /// The peer did not connect within the deadline (it stopped advertising or is out of range).
    case connectTimedOut(LEAddress, milliseconds: UInt64)
    /// The connection could not be established.
    case connectFailed(LEAddress, HCIStatus)
    /// The link went away.
    case disconnected(HCIStatus)
    /// The host was shut down.
    case shutDown

    public var description: String {
        switch self {
        case .transport(let m): return "Bluetooth controller transport failed: \(m)"
        case .commandTimedOut(let c): return "HCI command \(c) got no answer in time (controller wedged? it will be reset)"
        case let .commandFailed(c, s): return "HCI command \(c) failed: \(s)"
        case .malformedReply(let m): return "malformed controller reply: \(m)"
        case .busy: return "another connection attempt is in progress"
        case let .connectTimedOut(a, ms): return "\(a) did not connect within \(ms) ms (not advertising, or out of range)"
        case let .connectFailed(a, s): return "connection to \(a) failed: \(s)"
        case .disconnected(let s): return "the link went down: \(s)"
        case .shutDown: return "the Bluetooth host is shut down"
        }
    }
}
