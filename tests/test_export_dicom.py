"""DICOM exports land in the source study with the source's geometry, read back by pydicom,
SimpleITK and our reader (the real Siemens PD/T2 series)."""

from __future__ import annotations

import highdicom  # noqa: F401 - a hard dependency: a broken install fails, not skips
import numpy as np
import pytest

from napari_mlmi_interp.io import load


@pytest.fixture(scope="module")
def exported(shared_dicom, tmp_path_factory):
    from napari_mlmi_interp.export import export_dicom

    folder = shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11"
    volume = next(v for v in load(folder) if v.metadata.get("EchoNumber") == 1)
    rng = np.random.default_rng(0)
    amap = volume.with_array(rng.normal(size=volume.shape).astype(np.float32))
    amap.array[20, 30, 31] = 50.0  # one clear peak
    out = tmp_path_factory.mktemp("dicom")
    return volume, amap, export_dicom(amap, volume, out, method="gradcam", target="lesion", percent=1.0)


def test_derived_series_has_the_source_geometry_and_study(exported):
    import pydicom
    import SimpleITK as sitk

    volume, amap, out = exported
    derived = out["derived_series"]
    assert len(derived) == volume.shape[0]
    # SimpleITK (GDCM) reads it as a series with the source's geometry
    reader = sitk.ImageSeriesReader()
    folder = str(__import__("pathlib").Path(derived[0]).parent)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    image = reader.Execute()
    # against the source's geometry as our reader found it (the source interleaves two echoes
    # in one series, which GDCM cannot read as one volume; our reader's geometry of it is
    # checked against the vendor's reference NIfTIs in test_dicom_reference.py)
    # GDCM may stack the slices in the other order (then its slice axis points the other way):
    # the same grid is the same set of voxel positions, compared at the eight corners
    source = volume.geometry.to_sitk_parameters()
    np.testing.assert_allclose(sorted(image.GetSpacing()), sorted(source["spacing"]), atol=1e-4)
    size = image.GetSize()
    corners = [(i, j, k) for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)]
    theirs = sorted(tuple(np.round(image.TransformIndexToPhysicalPoint(c), 3)) for c in corners)
    z, y, x = (s - 1 for s in volume.shape)
    ours_idx = [(a, b, c) for a in (0, z) for b in (0, y) for c in (0, x)]
    ours = sorted(tuple(np.round(volume.geometry.to_lps(c), 3)) for c in ours_idx)
    np.testing.assert_allclose(theirs, ours, atol=2e-3)
    # and the voxels agree: the peak is where it was
    arr = sitk.GetArrayFromImage(image)  # values as rescaled by GDCM
    peak_lps = image.TransformIndexToPhysicalPoint(
        tuple(int(i) for i in np.unravel_index(arr.argmax(), arr.shape)[::-1])
    )
    np.testing.assert_allclose(peak_lps, volume.geometry.to_lps((20, 30, 31)), atol=1e-3)
    first = pydicom.dcmread(derived[0])
    np.testing.assert_allclose(first.ImagePositionPatient, volume.geometry.to_lps((0, 0, 0)), atol=1e-3)
    # our reader: the same grid, the map's values to within half a quantisation step
    (back,) = load(folder)
    assert back.geometry.same_grid(volume.geometry, atol_mm=1e-3)
    step = (amap.array.max() - amap.array.min()) / 65535
    np.testing.assert_allclose(back.array, amap.array, atol=step / 2 + 1e-6)
    # pydicom: same study and frame of reference, each slice references its source
    sources = {u for u in volume.references["SOPInstanceUIDs"]}
    for path in derived[:3]:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == volume.references["StudyInstanceUID"] == out["study_instance_uid"]
        assert ds.FrameOfReferenceUID == volume.references["FrameOfReferenceUID"]
        assert ds.SeriesInstanceUID != volume.references["SeriesInstanceUID"]
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
        assert "DERIVED" in ds.ImageType and not any(e.tag.is_private for e in ds)


def test_parametric_map_and_seg_frames_sit_on_the_source_slices(exported):
    import pydicom

    from napari_mlmi_interp.metrics import topk_mask

    volume, amap, out = exported
    positions = [volume.geometry.to_lps((k, 0, 0)) for k in range(volume.shape[0])]
    pm = pydicom.dcmread(out["parametric_map"])
    assert pm.SOPClassUID.name == "Parametric Map Storage"
    assert pm.StudyInstanceUID == volume.references["StudyInstanceUID"]
    series = [s.SeriesInstanceUID for s in pm.ReferencedSeriesSequence]
    assert volume.references["SeriesInstanceUID"] in series
    frames = pm.PerFrameFunctionalGroupsSequence
    assert len(frames) == volume.shape[0]
    mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    values = pm.pixel_array * float(mapping.RealWorldValueSlope) + float(mapping.RealWorldValueIntercept)
    step = (amap.array.max() - amap.array.min()) / 65535

    def slice_of(frame) -> int:
        """The source slice a frame sits on (highdicom may order the frames its own way)."""
        ipp = np.asarray(frame.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        k = int(np.argmin([np.abs(ipp - p).max() for p in positions]))
        np.testing.assert_allclose(ipp, positions[k], atol=1e-3)
        return k

    for f, frame in enumerate(frames):  # every frame holds its own slice's values
        np.testing.assert_allclose(values[f], amap.array[slice_of(frame)], atol=step / 2 + 1e-5)
    assert values.max() == pytest.approx(50.0, abs=float(step))

    seg = pydicom.dcmread(out["segmentation"])
    assert seg.SOPClassUID.name == "Segmentation Storage"
    assert seg.StudyInstanceUID == volume.references["StudyInstanceUID"]
    mask = topk_mask(amap.array, 1.0)
    pixels = seg.pixel_array.astype(bool)
    seen = set()
    for f, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        k = slice_of(frame)
        seen.add(k)
        np.testing.assert_array_equal(pixels[f], mask[k])
        if k == 20:
            assert pixels[f][30, 31]  # the peak is in the region, on its own slice
    assert seen == set(range(volume.shape[0]))


def test_exports_carry_the_pseudonym_unless_identity_is_asked_for(exported, tmp_path):
    import pydicom

    from napari_mlmi_interp.export import export_dicom
    from napari_mlmi_interp.export.dicom import source_datasets

    volume, amap, out = exported
    source = source_datasets(volume)[0]
    for path in (out["derived_series"][0], out["parametric_map"], out["segmentation"]):
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == volume.case_id == ds.PatientID
        assert "PatientBirthDate" not in ds or not ds.PatientBirthDate
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID == source.StudyInstanceUID  # still in the source study
    kept = export_dicom(amap, volume, tmp_path, method="gradcam", keep_identity=True)
    assert kept["identity"] == "source"
    ds = pydicom.dcmread(kept["parametric_map"])
    assert str(ds.PatientName) == str(source.PatientName) and ds.PatientID == source.PatientID


def test_non_dicom_sources_are_refused_with_a_reason(tmp_path):
    from napari_mlmi_interp.export import ExportError, export_dicom
    from napari_mlmi_interp.sample import make_sample

    sample = make_sample()
    with pytest.raises(ExportError, match="not read from a DICOM series"):
        export_dicom(sample.mask, sample.scan, tmp_path)


def test_batch_writes_dicom_for_dicom_cases(shared_dicom, tmp_path):
    import json

    import pydicom

    from napari_mlmi_interp.cohort import run_batch

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"scan\n{shared_dicom / 'dcm_qa_pdt2' / 'In' / 'Siemens' / 'VE11'}\n")
    result = run_batch(
        manifest, model="lesion-classifier", methods=["saliency"], out=tmp_path / "out", workers=0, dicom=True
    )
    (record,) = result.records
    assert record["status"] == "ok", record.get("error")
    sidecar = json.loads((tmp_path / "out" / "cases" / record["case"] / "saliency.json").read_text())
    pm = pydicom.dcmread(sidecar["dicom"]["parametric_map"])
    (scan,) = load(shared_dicom / "dcm_qa_pdt2" / "In" / "Siemens" / "VE11")[:1]
    assert pm.StudyInstanceUID == scan.references["StudyInstanceUID"]
