// Camera frames from AVCaptureVideoDataOutput into the FaceDetector, results back on the main queue.
//
// The pattern of Apple's "Recognizing Objects in Live Capture" sample: a session with a video data output whose
// delegate gets each frame as a CVPixelBuffer on a serial queue, late frames dropped while the model runs.

import AVFoundation
import UIKit

public enum CameraError: Error {
    case noCamera(AVCaptureDevice.Position)
    case cannotAdd(String)
}

/// What one frame gave: the faces and the frame they are normalised to.
public struct FaceFrame {
    public var faces: [Face]
    /// The orientation the frame was turned by before detection; `faces` are normalised to that upright frame.
    public var orientation: CGImagePropertyOrientation
    /// The camera buffer's size in pixels, as delivered (landscape: the sensor's native orientation).
    public var sensorSize: CGSize
}

public final class CameraController: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate {
    public let session = AVCaptureSession()
    public let position: AVCaptureDevice.Position
    /// Called on the main queue after every processed frame.
    public var onFrame: ((FaceFrame) -> Void)?

    private let detector: FaceDetector
    private let output = AVCaptureVideoDataOutput()
    private let videoQueue = DispatchQueue(label: "BlazeFaceCamera.video")      // frames and detection
    private let sessionQueue = DispatchQueue(label: "BlazeFaceCamera.session")  // startRunning blocks
    // The device orientation, written on the main queue (UIDevice is main-thread only), read on the video queue.
    private let lock = NSLock()
    private var deviceOrientation: UIDeviceOrientation = .portrait

    /// `position`: `.front` with a short_range (or front) model, `.back` with full_range_sparse (or back).
    public init(detector: FaceDetector, position: AVCaptureDevice.Position) {
        self.detector = detector
        self.position = position
        super.init()
    }

    /// Build the session. Call once, after the app has camera permission (NSCameraUsageDescription in Info.plist).
    public func configure() throws {
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        // The models see 128 to 256 pixels: a bigger frame only costs time to letterbox.
        session.sessionPreset = .hd1280x720
        guard let camera = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: position) else {
            throw CameraError.noCamera(position)
        }
        let input = try AVCaptureDeviceInput(device: camera)
        guard session.canAddInput(input) else { throw CameraError.cannotAdd("camera input") }
        session.addInput(input)

        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true  // drop frames that arrive while the model is busy
        output.setSampleBufferDelegate(self, queue: videoQueue)
        guard session.canAddOutput(output) else { throw CameraError.cannotAdd("video data output") }
        session.addOutput(output)
        // The output's connection is left as it is: buffers in the sensor's native landscape orientation and not
        // mirrored. The orientation handed to the detector turns and mirrors them. (Setting the connection's
        // videoOrientation or isVideoMirrored instead would change the buffers; then the orientation is `.up`.)
    }

    /// Start on a background queue (startRunning blocks) and follow the device's orientation.
    public func start() {
        UIDevice.current.beginGeneratingDeviceOrientationNotifications()
        NotificationCenter.default.addObserver(self, selector: #selector(orientationChanged),
                                               name: UIDevice.orientationDidChangeNotification, object: nil)
        orientationChanged()
        sessionQueue.async { self.session.startRunning() }
    }

    public func stop() {
        NotificationCenter.default.removeObserver(self, name: UIDevice.orientationDidChangeNotification, object: nil)
        UIDevice.current.endGeneratingDeviceOrientationNotifications()
        sessionQueue.async { self.session.stopRunning() }
    }

    @objc private func orientationChanged() {
        let orientation = UIDevice.current.orientation
        // Face up, face down and unknown keep the last real orientation.
        guard orientation.isPortrait || orientation.isLandscape else { return }
        lock.lock()
        deviceOrientation = orientation
        lock.unlock()
    }

    // AVCaptureVideoDataOutputSampleBufferDelegate: one frame, on videoQueue.
    public func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                              from connection: AVCaptureConnection) {
        guard let pixelBuffer = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        lock.lock()
        let device = deviceOrientation
        lock.unlock()
        // Portrait back camera: .right; portrait front camera: .leftMirrored (mirrored as the preview shows it).
        let orientation = Geometry.exifOrientation(deviceOrientation: device, cameraPosition: position)
        let faces = (try? detector.detect(in: pixelBuffer, orientation: orientation)) ?? []
        let size = CGSize(width: CVPixelBufferGetWidth(pixelBuffer), height: CVPixelBufferGetHeight(pixelBuffer))
        let frame = FaceFrame(faces: faces, orientation: orientation, sensorSize: size)
        DispatchQueue.main.async { self.onFrame?(frame) }
    }
}
