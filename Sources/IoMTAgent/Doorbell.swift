/// A coalescing wake-up signal: any number of `ring()`s before the waiter runs count as one.
/// Lets event handlers hand work to a single loop without polling.
public struct Doorbell: Sendable {
    public let rings: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    public init() {
        (rings, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func ring() { continuation.yield() }
    public func close() { continuation.finish() }
}
