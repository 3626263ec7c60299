// Drawing faces over the camera preview: UIKit (PreviewView) and SwiftUI (CameraPreview + FaceOverlay).
//
// The preview layer shows the frame turned by the DISPLAY orientation (for a portrait-only interface: `.right`
// for the back camera, `.leftMirrored` for the front, which the preview mirrors by default) and aspect-filled.
// The faces are normalised to the frame turned by the DETECTION orientation (the device's). So each box goes
// detection frame -> display frame (Geometry.reorientRect) -> view points (Geometry.aspectFillRect).
// AVCaptureVideoPreviewLayer.layerRectConverted(fromMetadataOutputRect:) would do the second step and the
// preview's own turn and mirroring from a rect normalised to the SENSOR buffer (Geometry.sensorPoint of the
// corners), but how it treats the front camera's mirroring could not be checked here; the math below is tested
// (tests/test_ios_math.py).

import AVFoundation
import SwiftUI
import UIKit

extension FaceFrame {
    /// The frame's size once turned by `display`.
    func displaySize(_ display: CGImagePropertyOrientation) -> CGSize {
        Geometry.uprightSize(width: sensorSize.width, height: sensorSize.height, orientation: display)
    }

    /// `face.box` in points of a view (UIKit or SwiftUI: both top-left, y down) showing the preview aspect-filled.
    public func viewRect(of face: Face, display: CGImagePropertyOrientation, viewSize: CGSize) -> CGRect {
        let rect = Geometry.reorientRect(face.box, from: orientation, to: display)
        return Geometry.aspectFillRect(rect, imageSize: displaySize(display), viewSize: viewSize)
    }

    /// `face.keypoints` in view points, in the same order (the subject's right eye first).
    public func viewKeypoints(of face: Face, display: CGImagePropertyOrientation, viewSize: CGSize) -> [CGPoint] {
        face.keypoints.map {
            Geometry.aspectFillPoint(Geometry.reorientPoint($0, from: orientation, to: display),
                                     imageSize: displaySize(display), viewSize: viewSize)
        }
    }
}

/// UIKit: the camera preview, aspect-filled, with the faces drawn over it.
public final class PreviewView: UIView {
    public override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
    public var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }
    /// How the preview turns the frame. The preview connection's default is portrait; change both together if
    /// your interface rotates (connection.videoOrientation, or videoRotationAngle on iOS 17).
    public var displayOrientation: CGImagePropertyOrientation
    private let overlay = CAShapeLayer()

    public init(session: AVCaptureSession, position: AVCaptureDevice.Position) {
        displayOrientation = Geometry.exifOrientation(deviceOrientation: .portrait, cameraPosition: position)
        super.init(frame: .zero)
        previewLayer.session = session
        previewLayer.videoGravity = .resizeAspectFill
        overlay.strokeColor = UIColor.systemYellow.cgColor
        overlay.fillColor = UIColor.clear.cgColor
        overlay.lineWidth = 2
        layer.addSublayer(overlay)
    }

    required init?(coder: NSCoder) { fatalError("PreviewView is made in code") }

    public override func layoutSubviews() {
        super.layoutSubviews()
        overlay.frame = bounds
    }

    /// Draw one frame's faces: a box each and a dot per keypoint.
    public func show(_ frame: FaceFrame) {
        let path = UIBezierPath()
        for face in frame.faces {
            path.append(UIBezierPath(rect: frame.viewRect(of: face, display: displayOrientation, viewSize: bounds.size)))
            for point in frame.viewKeypoints(of: face, display: displayOrientation, viewSize: bounds.size) {
                path.append(UIBezierPath(ovalIn: CGRect(x: point.x - 3, y: point.y - 3, width: 6, height: 6)))
            }
        }
        overlay.path = path.cgPath
    }
}

/// SwiftUI: the preview (a PreviewView underneath; it draws nothing itself here).
public struct CameraPreview: UIViewRepresentable {
    public let session: AVCaptureSession
    public let position: AVCaptureDevice.Position

    public init(session: AVCaptureSession, position: AVCaptureDevice.Position) {
        self.session = session
        self.position = position
    }

    public func makeUIView(context: Context) -> PreviewView {
        PreviewView(session: session, position: position)
    }

    public func updateUIView(_ uiView: PreviewView, context: Context) {}
}

/// SwiftUI: the faces of the latest frame, drawn in a view laid over `CameraPreview` with the same frame.
public struct FaceOverlay: View {
    public var frame: FaceFrame?
    public var display: CGImagePropertyOrientation

    public init(frame: FaceFrame?, display: CGImagePropertyOrientation) {
        self.frame = frame
        self.display = display
    }

    public var body: some View {
        GeometryReader { proxy in
            Path { path in
                guard let frame else { return }
                for face in frame.faces {
                    path.addRect(frame.viewRect(of: face, display: display, viewSize: proxy.size))
                    for point in frame.viewKeypoints(of: face, display: display, viewSize: proxy.size) {
                        path.addEllipse(in: CGRect(x: point.x - 3, y: point.y - 3, width: 6, height: 6))
                    }
                }
            }
            .stroke(Color.yellow, lineWidth: 2)
        }
        .allowsHitTesting(false)
    }
}

/// SwiftUI: the camera and its latest faces, for a view to observe.
@MainActor
public final class FaceCamera: ObservableObject {
    @Published public private(set) var frame: FaceFrame?
    public let camera: CameraController

    public init(detector: FaceDetector, position: AVCaptureDevice.Position) throws {
        camera = CameraController(detector: detector, position: position)
        try camera.configure()
        camera.onFrame = { [weak self] frame in self?.frame = frame }  // called on the main queue
    }
}
