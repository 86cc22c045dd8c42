import pytest
import torch
from PIL import Image

from retriever.images import ImageLoadError
from retriever.processing_ret import MISSING_IMAGE_SIZE
from tests.helpers import random_image


@pytest.fixture()
def processor(tiny_retriever):
    return tiny_retriever.document_processor


def test_missing_modalities_follow_the_reference(processor):
    batch = processor(["a caption", "", None], [random_image(0), random_image(1), None])
    assert batch.text_mask.tolist() == [1.0, 0.0, 0.0]
    assert batch.image_mask.tolist() == [1.0, 1.0, 0.0]
    black = Image.new("RGB", (MISSING_IMAGE_SIZE, MISSING_IMAGE_SIZE), "black")
    expected = processor.image_processor(images=[black], return_tensors="pt")["pixel_values"][0]
    assert torch.equal(batch.pixel_values[2], expected)
    # an empty text is tokenised as "" (BOS, EOS), like the reference
    ids, mask = processor.tokenize([""])
    assert torch.equal(batch.input_ids[1, : int(mask.sum())], ids[0])


def test_padding_to_longest_and_truncation_at_77(processor):
    long_text = "word " * 200
    batch = processor(["short", long_text], None)
    assert batch.input_ids.shape == (2, 77)
    assert batch.attention_mask[1].sum() == 77 and batch.attention_mask[0].sum() < 10
    assert processor.token_lengths(["short", long_text])[1] == 77
    assert "token_type_ids" not in processor.tokenizer(["a"], return_token_type_ids=False)


def test_paths_pil_and_bytes_are_equivalent(processor, tmp_path):
    image = random_image(2)
    path = tmp_path / "img.png"
    image.save(path)
    by_pil = processor(["t"], [image]).pixel_values
    by_path = processor(["t"], [path]).pixel_values
    by_str = processor(["t"], [str(path)]).pixel_values
    by_bytes = processor(["t"], [path.read_bytes()]).pixel_values
    assert torch.equal(by_pil, by_path) and torch.equal(by_path, by_str)
    assert torch.equal(by_path, by_bytes)


def test_bad_image_raises_with_its_name(processor, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        processor(["t"], [bad])


def test_input_validation(processor):
    with pytest.raises(ValueError, match="2 texts but 1 images"):
        processor(["a", "b"], [None])
    with pytest.raises(TypeError, match="text 0 must be a string"):
        processor([3], [None])


def test_inputs_move_and_cast(processor):
    batch = processor(["a"], [random_image(0)]).to("cpu", torch.bfloat16)
    assert batch.pixel_values.dtype == torch.bfloat16 and batch.image_mask.dtype == torch.bfloat16
    assert batch.input_ids.dtype == torch.long and len(batch) == 1
