#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Runs `body` on a new detached OS thread, for the blocking calls (`read`, `accept`, `poll`,
/// `waitpid`) that must never occupy a thread of Swift's cooperative pool (two threads on a
/// 2-core hub). Returns false when no thread could be created (`pthread_create` failed, e.g.
/// EAGAIN at the thread limit); `body` has not run then, and the caller decides what that means
/// (an error naming the resource, or running the work inline).
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box: Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        guard let raw else { return nil }
        Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
        return nil
    }, context)
    guard rc == 0 else {
        Unmanaged<Box>.fromOpaque(context).release()
        return false
    }
    pthread_detach(thread)
    return true
}

/// Like `startDetachedThread`, but when no thread can be created `body` runs inline on the
/// caller's thread: for work that must happen even then (a device's read loop is better run
/// late than never; a test helper is better slow than hung).
public func runDetachedOrInline(_ body: @escaping @Sendable () -> Void) {
    if !startDetachedThread(body) { body() }
}
