import pytest
import torch

import fer_models
from fer_models.registry import register_model


def test_duplicate_names_raise():
    with pytest.raises(ValueError, match="already registered"):
        @register_model("fer_cnn", modality="face")
        def again(num_classes):  # pragma: no cover - never called
            return None


def test_unknown_name_suggests_close_matches():
    with pytest.raises(fer_models.UnknownModelError, match="Did you mean 'fer_cnn'"):
        fer_models.create_model("fer_cnm", num_classes=7)


def test_timm_prefix_route_and_unknown_backbone():
    model = fer_models.create_model("timm/mobilenetv3_small_100", num_classes=5, image_size=32)
    assert model.backbone.default_cfg["architecture"] == "mobilenetv3_small_100"
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet1800'"):
        fer_models.create_model("timm/resnet1800", num_classes=5)


def test_list_models_filters_by_pattern():
    assert "fer_cnn" in fer_models.list_models("fer_*")
    assert "face_timm" not in fer_models.list_models("fer_*")


def test_self_attention_starts_as_identity_and_learns():
    from fer_models.layers import SelfAttention2d

    layer = SelfAttention2d(16, heads=2)
    x = torch.randn(2, 16, 5, 5)
    assert torch.equal(layer(x), x)  # gamma = 0 at start
    layer.gamma.data.fill_(1.0)
    assert not torch.allclose(layer(x), x)


def test_local_weights_file_is_loaded(tmp_path):
    source = fer_models.create_model("timm/resnet18", num_classes=7, image_size=32)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": source.backbone.state_dict()}, path)
    loaded = fer_models.create_model("timm/resnet18", num_classes=7, image_size=32, pretrained=str(path))
    assert torch.equal(loaded.backbone.conv1.weight, source.backbone.conv1.weight)


def test_missing_weights_file_is_one_sentence(tmp_path):
    from fer_models.face import PretrainedWeightsError

    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        fer_models.create_model("timm/resnet18", num_classes=7, pretrained=str(tmp_path / "nope.pth"))
