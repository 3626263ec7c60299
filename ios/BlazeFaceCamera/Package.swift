// swift-tools-version:5.9
// BlazeFaceCamera: a BlazeFace Core ML model (made by `blazeconv coreml`) on live camera frames.
// Add this package to an app (File > Add Package Dependencies... > Add Local...), then add the model itself
// (e.g. ShortRangeLandmarks.mlpackage) to the app target: docs/ios.md walks through it.
// Written without a compiler (no Apple toolchain where blazeconv is developed): see docs/ios.md, "What was checked".
import PackageDescription

let package = Package(
    name: "BlazeFaceCamera",
    platforms: [.iOS(.v15)],
    products: [
        .library(name: "BlazeFaceCamera", targets: ["BlazeFaceCamera"]),
    ],
    targets: [
        .target(name: "BlazeFaceCamera"),
    ]
)
